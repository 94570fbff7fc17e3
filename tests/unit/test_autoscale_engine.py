"""The decision engine: bounds, schedules, cooldown, max step, demand, idle removal, missing data; fake clock."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.autoscale.engine import Decision, Signals, Worker, decide, needed_signals, needs_signals
from provisioner.autoscale.policy import Policy, parse_policy


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# Monday 2026-03-30 12:00 Madrid (CEST): office-hours (08:00) in effect. 22:00 Madrid: night in effect.
NOON = utc(2026, 3, 30, 10)
NIGHT = utc(2026, 3, 30, 20)

BASE: dict[str, Any] = {
    "version": 1,
    "min_workers": 1,
    "max_workers": 10,
    "cooldown": "5m",
    "max_step": 3,
    "demand": {"pending_pods": True, "oscar_jobs": True, "pods_per_worker": 4, "idle_after": "15m"},
}
SCHEDULES = [
    {"name": "office-hours", "cron": "0 8 * * MON-FRI", "timezone": "Europe/Madrid", "min": 6},
    {"name": "night", "cron": "0 20 * * *", "timezone": "Europe/Madrid", "max": 1},
]


def policy(**changes: Any) -> Policy:
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        elif key == "demand":
            data["demand"].update(value)
        else:
            data[key] = value
    return parse_policy(data, "test")


def workers(*idle: float | None, prefix: str = "vm") -> tuple[Worker, ...]:
    """Workers vm0, vm1, ... in this order (the caller's order), with these idle times."""
    return tuple(Worker(f"{prefix}{index}", seconds) for index, seconds in enumerate(idle))


def quiet(count: int) -> Signals:
    """No demand, nobody idle, ``count`` workers known."""
    return Signals(pending_pods=0, waiting_jobs=0, workers=workers(*([None] * count)))


def run(
    policy_: Policy,
    current: int,
    signals: Signals,
    *,
    now: datetime = NOON,
    last_action_at: datetime | None = None,
) -> Decision:
    decision = decide(policy_, current_workers=current, signals=signals, last_action_at=last_action_at, now=now)
    json.dumps(decision.to_dict())  # always serialisable
    return decision


# --- a. bounds ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "current", "now", "action", "target", "rule", "fragment"),
    [
        # below min_workers: up to it
        ({"min_workers": 2}, 0, NOON, "scale_up", 2, "min_workers",
         "min_workers sets at least 2 workers; 0 running → add 2"),
        # far below: limited by max_step, the rest later
        ({"min_workers": 8}, 1, NOON, "scale_up", 4, "min_workers", "add 3 (max step 3; 4 more on later ticks)"),
        # above max_workers: down to it
        ({"max_workers": 3}, 5, NOON, "scale_down", 3, "max_workers", "max_workers sets at most 3 workers; 5 running"),
        ({"max_workers": 3, "max_step": 1}, 5, NOON, "scale_down", 4, "max_workers", "(max step 1; 1 more on later"),
        # schedule floor
        ({"schedules": SCHEDULES}, 2, NOON, "scale_up", 5, "schedule:office-hours floor",
         "schedule 'office-hours' (fired 2026-03-30 08:00 Europe/Madrid) sets at least 6 workers; 2 running → add 3"),
        ({"schedules": SCHEDULES}, 4, NOON, "scale_up", 6, "schedule:office-hours floor", "4 running → add 2"),
        # schedule ceiling
        ({"schedules": SCHEDULES}, 3, NIGHT, "scale_down", 1, "schedule:night ceiling",
         "schedule 'night' (fired 2026-03-30 20:00 Europe/Madrid) sets at most 1 worker; 3 running → remove 2"),
        # within the schedule's bounds: nothing
        ({"schedules": SCHEDULES}, 6, NOON, "none", 6, "steady", "6 workers within [6, 10] (schedule 'office-hours'"),
    ],
)  # fmt: skip
def test_bounds(
    changes: dict[str, Any], current: int, now: datetime, action: str, target: int, rule: str, fragment: str
) -> None:
    decision = run(policy(**changes), current, quiet(current), now=now)
    assert (decision.action, decision.target, decision.rule) == (action, target, rule)
    assert fragment in decision.reason
    assert len(decision.remove) == max(0, current - target)


def test_bounds_are_not_blocked_by_cooldown() -> None:
    just_now = NOON - timedelta(seconds=10)
    up = run(policy(schedules=SCHEDULES), 2, quiet(2), last_action_at=just_now)
    assert (up.action, up.target) == ("scale_up", 5)
    down = run(policy(schedules=SCHEDULES), 3, quiet(3), now=NIGHT, last_action_at=NIGHT - timedelta(seconds=10))
    assert (down.action, down.target) == ("scale_down", 1)


def test_ceiling_removes_idle_first_then_the_last_listed() -> None:
    signals = Signals(pending_pods=0, waiting_jobs=0, workers=workers(None, 30.0, None, 600.0, None, None))
    decision = run(policy(max_workers=2, max_step=4), 6, signals)
    assert decision.remove == ("vm3", "vm1", "vm5", "vm4")
    assert decision.target == 2


def test_ceiling_without_known_workers_holds() -> None:
    decision = run(policy(max_workers=2), 4, Signals(pending_pods=0, waiting_jobs=0))
    assert (decision.action, decision.target, decision.remove, decision.rule) == ("hold", 4, (), "unknown-workers")
    assert "no worker VM ids were given" in decision.reason


def test_ceiling_with_fewer_known_workers_removes_what_it_can_name() -> None:
    decision = run(policy(max_workers=2, max_step=5), 6, Signals(0, 0, workers(None, None)))
    assert (decision.action, decision.target, decision.remove) == ("scale_down", 4, ("vm1", "vm0"))
    assert "remove 2 (vm1, vm0) (only 2 worker VM ids known; 2 more on later ticks)" in decision.reason


# --- b. missing data ----------------------------------------------------------------------------------------------


def test_failed_source_holds_and_names_it() -> None:
    signals = Signals(errors=("kubernetes: connection refused",), workers=workers(5000.0, 5000.0, 5000.0))
    decision = run(policy(), 3, signals)
    assert (decision.action, decision.target, decision.rule, decision.remove) == ("hold", 3, "missing-data", ())
    assert "signal source failed: kubernetes: connection refused" in decision.reason
    assert decision.to_dict()["signals"]["errors"] == ["kubernetes: connection refused"]


@pytest.mark.parametrize(("current", "count"), [(0, "0 workers"), (1, "1 worker"), (2, "2 workers")])
def test_missing_data_hold_counts_workers_in_words(current: int, count: str) -> None:
    signals = Signals(errors=("kubernetes: connection refused",), workers=workers(*([None] * current)))
    decision = run(policy(min_workers=0), current, signals)
    assert decision.reason == (
        f"signal source failed: kubernetes: connection refused → holding at {count} "
        "(no scaling on missing data; bounds [0, 10] are met)"
    )


@pytest.mark.parametrize(
    ("signals", "fragment"),
    [
        (Signals(pending_pods=None, waiting_jobs=0, workers=workers(5000.0, 5000.0)), "pending pods were not read"),
        (Signals(pending_pods=9, waiting_jobs=None), "waiting OSCAR jobs were not read"),
    ],
)
def test_signal_not_read_holds(signals: Signals, fragment: str) -> None:
    decision = run(policy(), 2, signals)
    assert (decision.action, decision.rule) == ("hold", "missing-data")
    assert fragment in decision.reason


def test_signal_not_needed_may_be_missing() -> None:
    decision = run(policy(demand={"oscar_jobs": False}), 2, Signals(pending_pods=8, waiting_jobs=None))
    assert (decision.action, decision.target) == ("scale_up", 4)


@pytest.mark.parametrize(
    ("current", "now", "wanted"),
    [
        (2, NOON, "office-hours floor 6"),  # below the schedule's floor
        (4, NIGHT, "night ceiling 1"),  # above the schedule's ceiling: would have to guess which workers are idle
        (12, NOON, "max_workers 10"),
    ],
)
def test_missing_data_holds_even_against_bounds(current: int, now: datetime, wanted: str) -> None:
    """A source that cannot be read holds the whole tick: no bound is applied on missing data (the next tick that
    reads its sources does it), and the reason names the failed source."""
    broken = Signals(errors=("oscar: 503",), workers=workers(*([None] * current)))
    decision = run(policy(schedules=SCHEDULES), current, broken, now=now)
    assert (decision.action, decision.target, decision.remove, decision.rule) == ("hold", current, (), "missing-data")
    assert "signal source failed: oscar: 503" in decision.reason
    assert "wait for a tick that reads its sources" in decision.reason
    # The same tick with its sources read applies the bound.
    read = run(policy(schedules=SCHEDULES), current, quiet(current), now=now)
    assert read.changes, wanted


def test_signal_not_read_holds_against_bounds() -> None:
    decision = run(policy(schedules=SCHEDULES), 4, Signals(pending_pods=None, waiting_jobs=0), now=NIGHT)
    assert (decision.action, decision.rule, decision.target) == ("hold", "missing-data", 4)


def test_errors_hold_even_without_demand_rules() -> None:
    decision = run(policy(demand=None), 2, Signals(errors=("kubernetes: timeout",)))
    assert (decision.action, decision.rule) == ("hold", "missing-data")


# --- c. demand ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "current", "pods", "jobs", "action", "target", "rule", "fragment"),
    [
        ({}, 2, 5, 0, "scale_up", 4, "demand:pending", "5 pending pods: 2 more workers needed (4 per worker)"),
        ({}, 2, 4, 0, "scale_up", 3, "demand:pending", "1 more worker needed"),
        ({}, 2, 0, 1, "scale_up", 3, "demand:jobs", "1 waiting OSCAR job: 1 more worker needed"),
        ({}, 2, 3, 2, "scale_up", 4, "demand:pending+jobs", "3 pending pods and 2 waiting OSCAR jobs"),
        ({}, 2, 40, 0, "scale_up", 5, "demand:pending", "add 3 (max step 3; 5 more on later ticks); capped at the"),
        ({}, 8, 40, 0, "scale_up", 10, "demand:pending", "capped at the ceiling 10 set by max_workers"),
        ({}, 10, 40, 0, "none", 10, "max_workers", "already the ceiling 10"),
        ({"schedules": SCHEDULES}, 1, 40, 0, "none", 1, "schedule:night ceiling", "already the ceiling 1 set by"),
        ({"demand": {"oscar_jobs": False}}, 2, 0, 9, "none", 2, "steady", "no pending pods or waiting OSCAR jobs"),
        ({"demand": {"pending_pods": False}}, 2, 9, 0, "none", 2, "steady", "no pending pods"),
        ({"demand": {"pods_per_worker": 1}, "max_step": 10}, 2, 7, 0, "scale_up", 9, "demand:pending", "add 7"),
    ],
)
def test_demand(
    changes: dict[str, Any], current: int, pods: int, jobs: int, action: str, target: int, rule: str, fragment: str
) -> None:
    signals = Signals(pending_pods=pods, waiting_jobs=jobs, workers=workers(*([None] * current)))
    decision = run(policy(**changes), current, signals, now=NIGHT if changes.get("schedules") else NOON)
    assert (decision.action, decision.target, decision.rule) == (action, target, rule)
    assert fragment in decision.reason
    assert decision.remove == ()


@pytest.mark.parametrize(
    ("demand", "pods", "oscar_pods", "jobs", "without_pod", "target", "fragment"),
    [
        # 3 pending pods, 2 of them OSCAR jobs' pods, and those 2 jobs waiting: 3 in all, not 5
        ({}, 3, 2, 2, 0, 3, "3 pending pods (2 of them OSCAR jobs'): 1 more worker needed"),
        # + 1 OSCAR job with no pod yet, and 3 whose pods are placed on a node and starting (no demand)
        ({}, 2, 2, 6, 1, 3, "2 pending pods (2 of them OSCAR jobs') and 1 OSCAR job with no pod yet (3 OSCAR jobs"),
        ({}, 0, 0, 9, 5, 4, "5 OSCAR jobs with no pod yet (4 OSCAR jobs whose pods are placed and starting: not"),
        # OSCAR reports fewer waiting jobs than pods seen (read at another instant): never a negative count
        ({}, 4, 4, 1, 0, 3, "4 pending pods (4 of them OSCAR jobs'): 1 more worker needed"),
        # only the pod rule: the OSCAR jobs' pods are pending pods like any other
        ({"oscar_jobs": False}, 5, 5, 5, 0, 4, "5 pending pods: 2 more workers needed"),
        # only the OSCAR rule: OSCAR cannot tell a placed pod from an unschedulable one, every waiting job counts
        ({"pending_pods": False}, 5, 5, 2, 0, 3, "2 waiting OSCAR jobs: 1 more worker needed"),
    ],
)
def test_oscar_jobs_are_counted_once(
    demand: dict[str, Any], pods: int, oscar_pods: int, jobs: int, without_pod: int, target: int, fragment: str
) -> None:
    signals = Signals(
        pending_pods=pods,
        oscar_job_pods=oscar_pods,
        waiting_jobs=jobs,
        jobs_without_pod=without_pod,
        workers=workers(None, None),
    )
    decision = run(policy(demand=demand), 2, signals)
    assert (decision.action, decision.target) == ("scale_up", target)
    assert fragment in decision.reason


def test_oscar_jobs_whose_pods_are_placed_and_starting_are_no_demand() -> None:
    # OSCAR lists a job as Pending while its pod pulls its image on a node: a new worker would not help it.
    signals = Signals(pending_pods=0, oscar_job_pods=0, waiting_jobs=3, jobs_without_pod=0, workers=workers(None))
    decision = run(policy(), 1, signals)
    assert (decision.action, decision.target, decision.rule) == ("none", 1, "steady")
    assert "no pending pods or waiting OSCAR jobs (3 OSCAR jobs whose pods are placed and starting" in decision.reason


def test_demand_waits_for_the_cooldown() -> None:
    signals = Signals(pending_pods=5, waiting_jobs=0)
    last = NOON - timedelta(minutes=2)
    held = run(policy(), 2, signals, last_action_at=last)
    assert (held.action, held.target, held.rule) == ("hold", 2, "cooldown")
    assert "would add 2, but the cooldown of 5m runs until 2026-03-30 10:03:00 UTC (3m left)" in held.reason
    assert held.to_dict()["cooldown_until"] == "2026-03-30T10:03:00+00:00"
    after = run(policy(), 2, signals, last_action_at=NOON - timedelta(minutes=5))  # exactly at the end
    assert (after.action, after.target) == ("scale_up", 4)
    no_cooldown = run(policy(cooldown=0), 2, signals, last_action_at=NOON)
    assert no_cooldown.action == "scale_up"


# --- d. idle ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "current", "idle", "action", "target", "remove", "fragment"),
    [
        # vm1 and vm3 idle >= 15m; vm2 idle but not long enough; most idle first
        ({}, 4, (None, 900.0, 899.0, 4000.0), "scale_down", 2, ("vm3", "vm1"),
         "2 workers idle for 15m or more; 4 running → remove 2 (vm3, vm1, most idle first)"),
        # never below the floor (min_workers 1)
        ({}, 2, (1000.0, 2000.0), "scale_down", 1, ("vm1",), "not below the floor 1 set by min_workers"),
        # never below the schedule's floor
        ({"schedules": SCHEDULES}, 7, (1000.0,) * 7, "scale_down", 6, ("vm0",),
         "not below the floor 6 set by schedule 'office-hours'"),
        ({"schedules": SCHEDULES}, 6, (1000.0,) * 6, "none", 6, (), "already the floor 6 set by schedule"),
        # at most max_step
        ({"max_step": 2}, 6, (1000.0, 1100.0, 1200.0, 1300.0, None, None), "scale_down", 4, ("vm3", "vm2"),
         "(max step 2)"),
        # nobody idle long enough: steady
        ({}, 3, (None, 10.0, 899.9), "none", 3, (), "no worker idle for 15m or more"),
        # idle removal off
        ({"demand": {"idle_after": False}}, 3, (9000.0, 9000.0, 9000.0), "none", 3, (), "no pending pods"),
    ],
)  # fmt: skip
def test_idle_removal(
    changes: dict[str, Any],
    current: int,
    idle: tuple[float | None, ...],
    action: str,
    target: int,
    remove: tuple[str, ...],
    fragment: str,
) -> None:
    signals = Signals(pending_pods=0, waiting_jobs=0, workers=workers(*idle))
    decision = run(policy(**changes), current, signals)
    assert (decision.action, decision.target, decision.remove) == (action, target, remove)
    assert fragment in decision.reason
    if action == "scale_down":
        assert decision.rule == "idle"


def test_idle_removal_waits_for_the_cooldown() -> None:
    signals = Signals(pending_pods=0, waiting_jobs=0, workers=workers(5000.0, 5000.0))
    decision = run(policy(), 2, signals, last_action_at=NOON - timedelta(seconds=30))
    assert (decision.action, decision.target, decision.remove, decision.rule) == ("hold", 2, (), "cooldown")
    assert "would remove 1 (vm0)" in decision.reason


def test_idle_workers_stay_while_there_is_demand() -> None:
    signals = Signals(pending_pods=1, waiting_jobs=0, workers=workers(5000.0, 5000.0, 5000.0))
    decision = run(policy(), 3, signals)
    assert decision.action == "scale_up" and decision.remove == ()


# --- e. steady, signals, to_dict ----------------------------------------------------------------------------------


def test_no_demand_rules() -> None:
    plain = policy(demand=None)
    assert not needs_signals(plain)
    assert needed_signals(plain) == frozenset()
    decision = run(plain, 3, Signals(workers=workers(9000.0, 9000.0, 9000.0)))
    assert (decision.action, decision.rule) == ("none", "steady")
    assert decision.reason == "3 workers within [1, 10]; the policy has no demand rules"


@pytest.mark.parametrize(("current", "count"), [(0, "0 workers"), (1, "1 worker"), (2, "2 workers")])
def test_steady_counts_workers_in_words(current: int, count: str) -> None:
    decision = run(policy(min_workers=0, demand=None), current, quiet(current))
    assert decision.reason == f"{count} within [0, 10]; the policy has no demand rules"


def test_needed_signals() -> None:
    assert needed_signals(policy()) == {"pending_pods", "waiting_jobs", "worker_idle"}
    assert needed_signals(policy(demand={"oscar_jobs": False, "idle_after": False})) == {"pending_pods"}
    assert needs_signals(policy())


def test_decision_to_dict() -> None:
    signals = Signals(pending_pods=0, waiting_jobs=0, workers=workers(2000.0, None))
    decision = run(policy(schedules=SCHEDULES), 8, signals, now=NIGHT, last_action_at=NIGHT - timedelta(hours=1))
    data = decision.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "action": "scale_down",
        "current": 8,
        "target": 6,
        "add": 0,
        "remove": ["vm0", "vm1"],
        "rule": "schedule:night ceiling",
        "reason": "schedule 'night' (fired 2026-03-30 20:00 Europe/Madrid) sets at most 1 worker; 8 running → "
        "remove 2 (vm0, vm1) (max step 3; only 2 worker VM ids known; 5 more on later ticks)",
        "bounds": {
            "floor": 1,
            "ceiling": 1,
            "floor_rule": "min_workers",
            "ceiling_rule": "schedule:night ceiling",
            "schedule": "night",
            "schedule_fired_at": "2026-03-30T18:00:00+00:00",
        },
        "signals": {
            "pending_pods": 0,
            "oscar_job_pods": None,
            "waiting_jobs": 0,
            "jobs_without_pod": None,
            "workers": [{"vm_id": "vm0", "idle_seconds": 2000.0}, {"vm_id": "vm1", "idle_seconds": None}],
            "errors": [],
        },
        "now": "2026-03-30T20:00:00+00:00",
        "cooldown_until": "2026-03-30T19:05:00+00:00",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"now": datetime(2026, 3, 30, 12)}, "now must be an aware datetime"),
        ({"last_action_at": datetime(2026, 3, 30, 12)}, "last_action_at must be an aware datetime"),
        ({"current_workers": -1}, "current_workers must be >= 0"),
        ({"signals": Signals(pending_pods=-1)}, "signals.pending_pods must be >= 0"),
        ({"signals": Signals(workers=(Worker("a"), Worker("a")))}, "lists a VM id twice"),
        ({"signals": Signals(pending_pods=1, oscar_job_pods=2)}, "oscar_job_pods must not exceed"),
        ({"signals": Signals(waiting_jobs=1, jobs_without_pod=2)}, "jobs_without_pod must not exceed"),
    ],
)
def test_caller_mistakes(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"current_workers": 1, "signals": quiet(1), "last_action_at": None, "now": NOON}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        decide(policy(), **arguments)


# --- daylight saving ----------------------------------------------------------------------------------------------

# Sunday 2026-10-25, Europe/Madrid falls back: 03:00 CEST (01:00 UTC) becomes 02:00 CET, so 02:00-02:59 happens twice
# (00:00-00:59 UTC in summer time, 01:00-01:59 UTC in winter time).
FALL_BACK = [
    # fires at the first 02:30 only (00:30 UTC)
    {"name": "quiet", "cron": "30 2 * * *", "timezone": "Europe/Madrid", "max": 2},
    # 01:00 UTC, i.e. 02:00 CET on the second pass through 02:00-02:59
    {"name": "batch", "cron": "0 1 * * *", "timezone": "UTC", "min": 4},
]


@pytest.mark.parametrize(
    ("now", "current", "schedule", "bounds", "action", "target", "rule", "fragment"),
    [
        # 02:29 CEST (00:29 UTC): neither fired today; batch from yesterday 01:00 UTC is in effect
        (utc(2026, 10, 25, 0, 29), 2, "batch", (4, 10), "scale_up", 4, "schedule:batch floor", "add 2"),
        # 02:30 CEST (00:30 UTC): quiet fires, ceiling 2 (batch's floor 4 no longer in effect)
        (utc(2026, 10, 25, 0, 30), 5, "quiet", (1, 2), "scale_down", 2, "schedule:quiet ceiling",
         "schedule 'quiet' (fired 2026-10-25 02:30 Europe/Madrid) sets at most 2 workers; 5 running → remove 3"),
        # 02:00 CET (01:00 UTC): batch fires
        (utc(2026, 10, 25, 1, 0), 2, "batch", (4, 10), "scale_up", 4, "schedule:batch floor", "add 2"),
        # 02:30 CET (01:30 UTC), the wall time quiet names happens again: it does not fire a second time
        (utc(2026, 10, 25, 1, 30), 2, "batch", (4, 10), "scale_up", 4, "schedule:batch floor", "add 2"),
        (utc(2026, 10, 25, 1, 45), 4, "batch", (4, 10), "none", 4, "steady", "4 workers within [4, 10]"),
        # the next night (no change): quiet fires at 02:30 CET = 01:30 UTC, after batch
        (utc(2026, 10, 26, 1, 30), 4, "quiet", (1, 2), "scale_down", 2, "schedule:quiet ceiling",
         "(fired 2026-10-26 02:30 Europe/Madrid)"),
    ],
)  # fmt: skip
def test_schedules_across_the_fall_back(
    now: datetime,
    current: int,
    schedule: str,
    bounds: tuple[int, int],
    action: str,
    target: int,
    rule: str,
    fragment: str,
) -> None:
    decision = run(policy(schedules=FALL_BACK, max_step=5), current, quiet(current), now=now)
    assert decision.bounds.schedule is not None and decision.bounds.schedule.name == schedule
    assert (decision.bounds.floor, decision.bounds.ceiling) == bounds
    assert (decision.action, decision.target, decision.rule) == (action, target, rule)
    assert fragment in decision.reason


# --- property ---------------------------------------------------------------------------------------------------------

CRONS = ["0 8 * * MON-FRI", "0 20 * * *", "*/30 * * * *", "0 0 1 * *", "30 2 * * SUN", "0 8 1 * MON", "@hourly"]
ZONES = ["Europe/Madrid", "UTC", "America/New_York", "Australia/Lord_Howe"]
ERRORS = ["kubernetes: connection refused", "oscar: HTTP 503", "kubernetes: timed out"]


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    low = draw(st.integers(0, 10))
    high = draw(st.integers(low, min(100, low + 20)))
    entries = []
    for index in range(draw(st.integers(0, 3))):
        entry: dict[str, Any] = {"name": f"s{index}", "cron": draw(st.sampled_from(CRONS))}
        entry["timezone"] = draw(st.sampled_from(ZONES))
        kind = draw(st.sampled_from(["min", "max", "both"]))
        if kind in ("min", "both"):
            entry["min"] = draw(st.integers(0, high))
        if kind in ("max", "both"):
            entry["max"] = draw(st.integers(max(low, entry.get("min", 0)), high + 5))
        entries.append(entry)
    data: dict[str, Any] = {
        "version": 1,
        "min_workers": low,
        "max_workers": high,
        "cooldown": draw(st.integers(0, 900)),
        "max_step": draw(st.integers(1, 5)),
        "schedules": entries,
    }
    if draw(st.booleans()):
        data["demand"] = {
            "pending_pods": draw(st.booleans()),
            "oscar_jobs": draw(st.booleans()),
            "pods_per_worker": draw(st.integers(1, 8)),
            "idle_after": draw(st.sampled_from([60, 900, "1h", False])),
        }
        if not (data["demand"]["pending_pods"] or data["demand"]["oscar_jobs"]):
            data["demand"]["idle_after"] = 900
    return parse_policy(data, "hypothesis")


@st.composite
def ticks(draw: st.DrawFn) -> tuple[int, Signals, datetime, datetime | None]:
    current = draw(st.integers(0, 40))
    known = draw(st.integers(0, current)) if draw(st.booleans()) else current  # usually all workers are known
    idle = st.one_of(st.none(), st.floats(0, 10_000, allow_nan=False))
    pending = draw(st.one_of(st.none(), st.integers(0, 200)))
    waiting = draw(st.one_of(st.none(), st.integers(0, 200)))
    signals = Signals(
        pending_pods=pending,
        oscar_job_pods=None if pending is None else draw(st.integers(0, pending)),
        waiting_jobs=waiting,
        jobs_without_pod=None if waiting is None else draw(st.one_of(st.none(), st.integers(0, waiting))),
        workers=tuple(Worker(f"vm-{index}", draw(idle)) for index in range(known)),
        errors=tuple(draw(st.lists(st.sampled_from(ERRORS), max_size=2, unique=True))),
    )
    now = draw(st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)))
    last = draw(st.one_of(st.none(), st.integers(-60, 2000).map(lambda seconds: now - timedelta(seconds=seconds))))
    return current, signals, now, last


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy_=policies(), tick=ticks())
def test_decisions_stay_within_bounds_and_steps(
    policy_: Policy, tick: tuple[int, Signals, datetime, datetime | None]
) -> None:
    current, signals, now, last = tick
    decision = run(policy_, current, signals, now=now, last_action_at=last)
    floor, ceiling, target = decision.bounds.floor, decision.bounds.ceiling, decision.target
    assert floor <= ceiling
    assert abs(target - current) <= policy_.max_step
    needed = needed_signals(policy_)
    missing = bool(signals.errors) or any(
        name in needed and value is None
        for name, value in (("pending_pods", signals.pending_pods), ("waiting_jobs", signals.waiting_jobs))
    )
    # nothing at all on missing data, not even a bound
    if missing:
        assert (decision.action, target, decision.remove, decision.rule) == ("hold", current, (), "missing-data")
        return
    # within the bounds, or moving toward them (holding only when no worker can be named)
    if floor <= current <= ceiling:
        assert floor <= target <= ceiling
    elif current < floor:
        assert current < target <= floor
    elif signals.workers:
        assert ceiling <= target < current
    else:
        assert (decision.action, target) == ("hold", current)
    # action and target agree; removals are named, known, distinct and exactly the difference
    ids = {worker.vm_id for worker in signals.workers}
    expected_actions = {"scale_up"} if target > current else {"scale_down"} if target < current else {"none", "hold"}
    assert decision.action in expected_actions
    assert set(decision.remove) <= ids
    assert len(set(decision.remove)) == len(decision.remove)
    assert len(decision.remove) == (current - target if decision.action == "scale_down" else 0)
    # idle removal only removes workers idle long enough
    if decision.rule == "idle":
        assert policy_.demand is not None and policy_.demand.idle_after is not None
        idle_after = policy_.demand.idle_after
        by_id = {worker.vm_id: worker for worker in signals.workers}
        assert all((by_id[vm].idle_seconds or 0) >= idle_after for vm in decision.remove)
    assert decision.reason and "\n" not in decision.reason
