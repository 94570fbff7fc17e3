"""Policy files: a good one reads and round-trips; every bad one is refused (exit 2) with a line naming the field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from provisioner.autoscale.policy import (
    DEFAULT_COOLDOWN,
    DEFAULT_IDLE_AFTER,
    DEFAULT_MAX_STEP,
    Demand,
    active_schedule,
    effective_bounds,
    format_duration,
    load_policy,
    parse_policy,
)
from provisioner.errors import EXIT_BAD_INPUT, InputError

GOOD_YAML = """\
version: 1
min_workers: 1
max_workers: 10
cooldown: 5m          # seconds as int, or "90s", "5m", "1h"
max_step: 3
schedules:
  - name: office-hours
    cron: "0 8 * * MON-FRI"
    timezone: Europe/Madrid
    min: 6
  - name: night
    cron: "0 20 * * *"
    timezone: Europe/Madrid
    max: 1
demand:
  pending_pods: true
  oscar_jobs: true
  pods_per_worker: 4
  idle_after: 15m
"""

BASE: dict[str, Any] = {
    "version": 1,
    "min_workers": 1,
    "max_workers": 10,
    "cooldown": "5m",
    "max_step": 3,
    "schedules": [
        {"name": "office-hours", "cron": "0 8 * * MON-FRI", "timezone": "Europe/Madrid", "min": 6},
        {"name": "night", "cron": "0 20 * * *", "timezone": "Europe/Madrid", "max": 1},
    ],
    "demand": {"pending_pods": True, "oscar_jobs": True, "pods_per_worker": 4, "idle_after": "15m"},
}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_good_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD_YAML)
    policy = load_policy(path)
    assert (policy.min_workers, policy.max_workers, policy.cooldown, policy.max_step) == (1, 10, 300, 3)
    office, night = policy.schedules
    assert (office.name, office.cron.text, office.tz.key, office.floor, office.ceiling) == (
        "office-hours",
        "0 8 * * MON-FRI",
        "Europe/Madrid",
        6,
        None,
    )
    assert (night.name, night.floor, night.ceiling) == ("night", None, 1)
    assert policy.demand == Demand(pending_pods=True, oscar_jobs=True, pods_per_worker=4, idle_after=900)
    assert policy == parse_policy(BASE, "test")


def test_round_trip_through_to_dict_and_json() -> None:
    policy = parse_policy(BASE, "test")
    data = policy.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert parse_policy(json.loads(json.dumps(data)), "again") == policy
    assert data["cooldown"] == 300
    assert data["demand"]["idle_after"] == 900
    assert data["schedules"][1] == {"name": "night", "cron": "0 20 * * *", "timezone": "Europe/Madrid", "max": 1}


def test_minimal_policy_defaults() -> None:
    policy = parse_policy({"version": 1, "min_workers": 0, "max_workers": 0}, "test")
    assert (policy.cooldown, policy.max_step, policy.schedules, policy.demand) == (
        DEFAULT_COOLDOWN,
        DEFAULT_MAX_STEP,
        (),
        None,
    )
    assert parse_policy(policy.to_dict(), "again") == policy
    empty_demand = parse_policy({"version": 1, "min_workers": 0, "max_workers": 3, "demand": {}}, "test")
    assert empty_demand.demand == Demand(True, True, 1, DEFAULT_IDLE_AFTER)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(45, 45), ("120", 120), ("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2m30s", 150), (" 5M ", 300)],
)
def test_durations(value: object, seconds: int) -> None:
    data = copy.deepcopy(BASE)
    data["cooldown"] = value
    data["demand"]["idle_after"] = value
    policy = parse_policy(data, "test")
    assert policy.cooldown == seconds
    assert policy.demand is not None and policy.demand.idle_after == seconds


def test_cooldown_zero_and_idle_removal_off() -> None:
    data = copy.deepcopy(BASE)
    data["cooldown"] = 0
    data["demand"]["idle_after"] = False  # YAML `off`
    policy = parse_policy(data, "test")
    assert policy.cooldown == 0
    assert policy.demand is not None and policy.demand.idle_after is None
    assert parse_policy(policy.to_dict(), "again") == policy


def test_yaml_off_disables_idle_removal(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD_YAML.replace("idle_after: 15m", "idle_after: off"))
    demand = load_policy(path).demand
    assert demand is not None and demand.idle_after is None


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (90, "1m30s"), (900, "15m"), (5400, "1h30m"), (3600, "1h")])
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


# --- refusals -------------------------------------------------------------------------------------------------------


def setter(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets (or, with ..., deletes) the dotted path ("schedules.0.cron") in the policy data."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if value is ...:
            del node[key]
        else:
            node[key] = value

    return mutate


BAD: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    # (id, mutation, field, message fragment)
    ("version-2", setter("version", 2), "version", "must be 1, got 2"),
    ("version-missing", setter("version", ...), "version", "missing (required)"),
    ("version-text", setter("version", "1"), "version", "must be 1, got '1'"),
    ("version-true", setter("version", True), "version", "must be 1"),
    ("version-float", setter("version", 1.0), "version", "must be 1, got 1.0"),
    ("min-missing", setter("min_workers", ...), "min_workers", "missing (required)"),
    ("min-negative", setter("min_workers", -1), "min_workers", "must be at least 0, got -1"),
    ("min-text", setter("min_workers", "three"), "min_workers", "must be a whole number, got 'three'"),
    ("min-bool", setter("min_workers", True), "min_workers", "must be a whole number, got True"),
    ("min-float", setter("min_workers", 1.5), "min_workers", "must be a whole number, got 1.5"),
    ("max-below-min", setter("max_workers", 0), "max_workers", "must be at least min_workers (1), got 0"),
    ("max-over-limit", setter("max_workers", 101), "max_workers", "must be at most 100, got 101"),
    ("max-list", setter("max_workers", [10]), "max_workers", "must be a whole number, got a list"),
    ("unknown-top", setter("max_worker", 3), "max_worker", "unknown key; did you mean 'max_workers'?"),
    ("unknown-top-far", setter("colour", "red"), "colour", "unknown key (known: version, min_workers"),
    ("cooldown-words", setter("cooldown", "5 minutes"), "cooldown", "must be a duration (seconds as a whole number"),
    ("cooldown-negative", setter("cooldown", -5), "cooldown", "must be a duration of 0 or more seconds"),
    ("cooldown-float", setter("cooldown", 1.5), "cooldown", "must be a duration"),
    ("cooldown-days", setter("cooldown", "1d"), "cooldown", "must be a duration"),
    ("max-step-zero", setter("max_step", 0), "max_step", "must be at least 1, got 0"),
    ("schedules-mapping", setter("schedules", {"a": 1}), "schedules", "must be a list of schedule entries"),
    ("schedule-text", setter("schedules.0", "0 8 * * *"), "schedules[0]", "must be a mapping (name, cron"),
    ("cron-hour", setter("schedules.1.cron", "0 25 * * *"), "schedules[1].cron", "hour field '25': 25 is out of"),
    ("cron-fields", setter("schedules.0.cron", "0 8 * *"), "schedules[0].cron", "expected 5 fields"),
    ("cron-missing", setter("schedules.0.cron", ...), "schedules[0].cron", "missing (required)"),
    ("cron-number", setter("schedules.0.cron", 5), "schedules[0].cron", "must be a cron expression in quotes"),
    ("cron-never", setter("schedules.0.cron", "0 8 30 2 *"), "schedules[0].cron", "never occurs"),
    ("tz-typo", setter("schedules.0.timezone", "Europe/Madird"), "schedules[0].timezone", "unknown time zone"),
    ("tz-path", setter("schedules.0.timezone", "../etc/passwd"), "schedules[0].timezone", "unknown time zone"),
    ("tz-dir", setter("schedules.0.timezone", "Europe"), "schedules[0].timezone", "unknown time zone 'Europe'"),
    ("tz-missing", setter("schedules.1.timezone", ...), "schedules[1].timezone", "missing (required)"),
    ("tz-number", setter("schedules.1.timezone", 2), "schedules[1].timezone", "must be a time zone name"),
    ("entry-no-bound", setter("schedules.1.max", ...), "schedules[1]", "schedule 'night' sets neither min nor max"),
    ("entry-min-over-max", setter("schedules.0.min", 11), "schedules[0].min", "at least 11 contradicts max_workers"),
    ("entry-max-under-min", setter("schedules.1.max", 0), "schedules[1].max", "at most 0 contradicts min_workers"),
    ("entry-min-gt-max", setter("schedules.0.max", 5), "schedules[0].min", "min (6) is greater than max (5)"),
    ("entry-min-negative", setter("schedules.0.min", -1), "schedules[0].min", "must be at least 0"),
    ("entry-name-dup", setter("schedules.1.name", "office-hours"), "schedules[1].name", "duplicate name"),
    ("entry-name-empty", setter("schedules.0.name", " "), "schedules[0].name", "must be a non-empty text"),
    ("entry-name-missing", setter("schedules.0.name", ...), "schedules[0].name", "missing (required)"),
    ("entry-unknown", setter("schedules.0.minimum", 2), "schedules[0].minimum", "did you mean 'min'?"),
    ("demand-list", setter("demand", [1]), "demand", "must be a mapping"),
    ("demand-unknown", setter("demand.idle", "5m"), "demand.idle", "did you mean 'idle_after'?"),
    ("idle-zero", setter("demand.idle_after", 0), "demand.idle_after", "must be a duration of more than 0 seconds"),
    ("idle-zero-text", setter("demand.idle_after", "0m"), "demand.idle_after", "more than 0 seconds"),
    ("idle-words", setter("demand.idle_after", "soon"), "demand.idle_after", "must be a duration"),
    ("pods-per-worker-0", setter("demand.pods_per_worker", 0), "demand.pods_per_worker", "must be at least 1"),
    ("pending-text", setter("demand.pending_pods", "yes please"), "demand.pending_pods", "must be true or false"),
    ("jobs-number", setter("demand.oscar_jobs", 1), "demand.oscar_jobs", "must be true or false"),
]


@pytest.mark.parametrize(("mutate", "field", "fragment"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_policies_name_the_field(mutate: Callable[[dict[str, Any]], None], field: str, fragment: str) -> None:
    data = copy.deepcopy(BASE)
    mutate(data)
    with pytest.raises(InputError) as caught:
        parse_policy(data, "policy file p.yaml")
    error = caught.value
    assert error.exit_code == EXIT_BAD_INPUT
    assert error.field == field
    assert str(error).startswith(f"{field}: ")
    assert fragment in str(error)
    assert str(error).endswith("(in policy file p.yaml)")
    assert "\n" not in str(error)


def test_at_least_twenty_bad_policies() -> None:
    assert len(BAD) >= 20


def test_demand_that_turns_nothing_on() -> None:
    data = copy.deepcopy(BASE)
    data["demand"] = {"pending_pods": False, "oscar_jobs": False, "idle_after": False}
    with pytest.raises(InputError, match=r"^demand: turns no rule on"):
        parse_policy(data, "test")


@pytest.mark.parametrize("data", [[1, 2], "min_workers: 1", 3, None])
def test_not_a_mapping(data: object) -> None:
    with pytest.raises(InputError, match=r"^policy: must be a mapping") as caught:
        parse_policy(data, "test")
    assert caught.value.field == "policy"


def test_bad_cron_and_timezone_have_hints() -> None:
    data = copy.deepcopy(BASE)
    data["schedules"][0]["timezone"] = "Mars/Olympus"
    with pytest.raises(InputError) as caught:
        parse_policy(data, "test")
    assert caught.value.hint is not None and "Europe/Madrid" in caught.value.hint
    data = copy.deepcopy(BASE)
    data["schedules"][0]["cron"] = "every day"
    with pytest.raises(InputError) as caught:
        parse_policy(data, "test")
    assert caught.value.hint is not None and "minute hour" in caught.value.hint


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "version: missing (required)"),
        ("- 1\n- 2\n", "must be a YAML mapping"),
        ("version: 1\nmin_workers: [1\n", "is not valid YAML at line"),
        (
            "version: 1\nmin_workers: 1\nmax_workers: 2\nschedules:\n  - {name: a, cron: */15 * * * *}\n",
            "not valid YAML",
        ),
        (GOOD_YAML.replace("max_workers: 10", "max_workers: 200"), "max_workers: must be at most 100, got 200"),
    ],
)
def test_load_policy_file_errors(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        load_policy(path)
    assert fragment in str(caught.value)
    assert str(path) in str(caught.value)


def test_load_policy_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^policy: cannot read policy file .*nope.yaml"):
        load_policy(tmp_path / "nope.yaml")


# --- schedule semantics -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "entry", "floor", "ceiling"),
    [
        (utc(2026, 3, 30, 5, 59), "night", 1, 1),  # Monday 07:59 Madrid: Sunday's 20:00 still in effect
        (utc(2026, 3, 30, 6, 0), "office-hours", 6, 10),  # Monday 08:00 CEST
        (utc(2026, 3, 30, 17, 59), "office-hours", 6, 10),
        (utc(2026, 3, 30, 18, 0), "night", 1, 1),  # 20:00 CEST
        (utc(2026, 3, 28, 10, 0), "night", 1, 1),  # Saturday: Friday's night entry
        (utc(2026, 3, 27, 7, 0), "office-hours", 6, 10),  # Friday 08:00 CET
        (utc(2026, 3, 27, 6, 59), "night", 1, 1),
    ],
)
def test_effective_bounds_follow_the_latest_entry(now: datetime, entry: str, floor: int, ceiling: int) -> None:
    policy = parse_policy(BASE, "test")
    bounds = effective_bounds(policy, now)
    assert bounds.schedule is not None and bounds.schedule.name == entry
    assert (bounds.floor, bounds.ceiling) == (floor, ceiling)


def test_no_entry_fired_yet_means_policy_bounds() -> None:
    data = copy.deepcopy(BASE)
    data["schedules"] = [{"name": "leap", "cron": "0 0 29 2 *", "timezone": "UTC", "min": 5}]
    policy = parse_policy(data, "test")
    assert active_schedule(policy, utc(2026, 6, 1)) is None
    bounds = effective_bounds(policy, utc(2026, 6, 1))
    assert (bounds.floor, bounds.ceiling, bounds.schedule, bounds.floor_rule) == (1, 10, None, "min_workers")
    assert effective_bounds(policy, utc(2024, 3, 1)).floor == 5


def test_entry_bounds_combine_with_the_policy_bounds() -> None:
    data = copy.deepcopy(BASE)
    data["min_workers"] = 3
    data["schedules"] = [{"name": "wide", "cron": "@daily", "timezone": "UTC", "min": 2, "max": 50}]
    data["max_workers"] = 8
    bounds = effective_bounds(parse_policy(data, "test"), utc(2026, 6, 1, 12))
    assert (bounds.floor, bounds.ceiling) == (3, 8)  # max(3, 2), min(8, 50)
    assert (bounds.floor_rule, bounds.ceiling_rule) == ("min_workers", "max_workers")


def test_same_instant_later_entry_wins() -> None:
    data = copy.deepcopy(BASE)
    data["schedules"] = [
        {"name": "first", "cron": "0 8 * * *", "timezone": "Europe/Madrid", "min": 4},
        {"name": "second", "cron": "0 7 * * *", "timezone": "Europe/London", "min": 5},  # same instant
    ]
    active = active_schedule(parse_policy(data, "test"), utc(2026, 6, 1, 12))
    assert active is not None and active[0].name == "second"
    assert active[1] == utc(2026, 6, 1, 6)


def test_schedule_across_the_spring_change() -> None:
    """'0 8 * * *' Madrid fires at 07:00 UTC before the change and at 06:00 UTC after."""
    data = copy.deepcopy(BASE)
    data["schedules"] = [
        {"name": "morning", "cron": "0 8 * * *", "timezone": "Europe/Madrid", "min": 4},
        {"name": "evening", "cron": "0 20 * * *", "timezone": "Europe/Madrid", "max": 2},
    ]
    policy = parse_policy(data, "test")
    assert effective_bounds(policy, utc(2026, 3, 28, 6, 30)).floor == 1  # 07:30 CET: evening still
    assert effective_bounds(policy, utc(2026, 3, 28, 7, 0)).floor == 4  # 08:00 CET
    assert effective_bounds(policy, utc(2026, 3, 30, 6, 30)).floor == 4  # 08:30 CEST
    assert effective_bounds(policy, utc(2026, 3, 30, 5, 59)).floor == 1  # 07:59 CEST
    bounds = effective_bounds(policy, utc(2026, 3, 30, 6, 0))
    assert bounds.describe_schedule() == "schedule 'morning' (fired 2026-03-30 08:00 Europe/Madrid)"
    assert bounds.to_dict() == {
        "floor": 4,
        "ceiling": 10,
        "floor_rule": "schedule:morning floor",
        "ceiling_rule": "max_workers",
        "schedule": "morning",
        "schedule_fired_at": "2026-03-30T06:00:00+00:00",
    }


def test_schedule_across_the_autumn_change() -> None:
    """Europe/Madrid falls back on 2026-10-25 (03:00 CEST -> 02:00 CET): '30 2 * * *' fires once, at the first 02:30
    (00:30 UTC); the repeated 02:30 (01:30 UTC) does not bring it back after a later entry fired."""
    data = copy.deepcopy(BASE)
    data["schedules"] = [
        {"name": "quiet", "cron": "30 2 * * *", "timezone": "Europe/Madrid", "max": 2},
        {"name": "batch", "cron": "0 1 * * *", "timezone": "UTC", "min": 4},
    ]
    policy = parse_policy(data, "test")
    expected = [
        (utc(2026, 10, 25, 0, 29), "batch", utc(2026, 10, 24, 1), (4, 10)),
        (utc(2026, 10, 25, 0, 30), "quiet", utc(2026, 10, 25, 0, 30), (1, 2)),
        (utc(2026, 10, 25, 0, 59), "quiet", utc(2026, 10, 25, 0, 30), (1, 2)),
        (utc(2026, 10, 25, 1, 0), "batch", utc(2026, 10, 25, 1), (4, 10)),
        (utc(2026, 10, 25, 1, 30), "batch", utc(2026, 10, 25, 1), (4, 10)),  # 02:30 CET: not again
        (utc(2026, 10, 25, 23, 0), "batch", utc(2026, 10, 25, 1), (4, 10)),
        (utc(2026, 10, 26, 1, 30), "quiet", utc(2026, 10, 26, 1, 30), (1, 2)),  # 02:30 CET the next night
    ]
    for now, name, fired, (floor, ceiling) in expected:
        bounds = effective_bounds(policy, now)
        assert bounds.schedule is not None and bounds.schedule.name == name, now
        assert bounds.fired_at == fired, now
        assert (bounds.floor, bounds.ceiling) == (floor, ceiling), now
