"""The autoscaling decision: one pure function from (policy, what was read this tick, clock) to a ``Decision``.

No network, no disk, no clock: ``now`` and ``last_action_at`` are parameters, and signals are read by the caller.
Every ``Decision`` names the rule that matched and one sentence saying why, and ``Decision.to_dict()`` is
JSON-serialisable, so that ``autoscale explain`` can show the signals read, the rule and the action (or none).

Inputs:

- ``current_workers``: the workers the cluster has, counting those still being created (so that a scale-up is not
  repeated while its VMs boot).
- ``signals.workers``: the cluster's worker VMs in the caller's order (e.g. oldest first), each with how long it has
  been idle (``None`` = busy or not known). The VM ids are needed for any scale-down, since scale-down names the VMs
  to remove. ``signals.pending_pods`` (pods no node can take) / ``signals.waiting_jobs`` (OSCAR jobs waiting: OSCAR
  lists them ``Pending`` while their pod is, or ``Suspended`` while they have none): ``None`` when not read.
  ``signals.oscar_job_pods``: of the pending pods, those that are OSCAR jobs' pods. ``signals.jobs_without_pod``: of
  the waiting jobs, the ``Suspended`` ones. ``signals.errors``: one line per signal source that failed this tick.
- ``last_action_at``: when the last scaling action (of any kind) was applied; ``None`` if never.

Rules, first match wins (``floor``/``ceiling`` are the effective bounds, see ``policy.effective_bounds``):

a. Missing data. A signal source failed (``signals.errors``), or a signal the policy uses was not read: hold, with
   the failed sources named. Nothing at all happens on missing data -- not even a bound (a ceiling would have to
   pick workers to remove without knowing which are idle); the next tick that reads its sources catches up.
b. Bounds. ``current < floor``: scale up toward the floor; ``current > ceiling``: scale down toward the ceiling,
   removing idle workers first (most idle first), then the workers listed last. Bounds are promises: not blocked by
   the cooldown. Limited by ``max_step`` like every action; the rest follows on the next ticks. Without any worker
   ids to name, a needed scale-down holds (rule ``unknown-workers``). A worker whose idle time is unknown (``None``)
   counts as busy: it is never removed for being idle.
c. Demand. With only ``demand.pending_pods``: the pending pods. With only ``demand.oscar_jobs``: the waiting
   OSCAR jobs (OSCAR alone cannot tell a job whose pod no node can take from one whose pod is placed and starting).
   With both: the pending pods (OSCAR jobs' unschedulable pods among them) + the OSCAR jobs with no pod yet. So a
   job is counted once, and an OSCAR job whose pod is already placed on a node (``Pending`` while it pulls its
   image) is no demand: a new worker would not help it.
   If ``pending > 0``: add ``ceil(pending / pods_per_worker)`` workers, capped at the ceiling and ``max_step``;
   during the cooldown: hold (rule ``cooldown``); already at the ceiling: none. No idle removal while there is
   demand.
d. Idle. With no demand, workers idle for at least ``idle_after`` are removed, most idle first, never below the floor,
   at most ``max_step``; during the cooldown: hold. ``remove`` names exactly those VM ids.
e. Otherwise: none (rule ``steady``).

Actions: ``scale_up``/``scale_down`` (``target`` differs from ``current``), ``hold`` (a change was wanted or might
have been, but a cooldown, missing data or unknown workers keeps the count), ``none`` (nothing to do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from provisioner.autoscale.policy import Bounds, Policy, effective_bounds, format_duration

Action = Literal["none", "scale_up", "scale_down", "hold"]


@dataclass(frozen=True)
class Worker:
    """One worker VM as the decision sees it: its VM id (what a scale-down names) and how long it has been idle."""

    vm_id: str
    idle_seconds: float | None = None  # how long it has been idle; None = busy or not known

    def to_dict(self) -> dict[str, Any]:
        return {"vm_id": self.vm_id, "idle_seconds": self.idle_seconds}


@dataclass(frozen=True)
class Signals:
    """What the caller read this tick. ``None`` = not read; ``errors`` = one line per source that failed."""

    pending_pods: int | None = None
    waiting_jobs: int | None = None
    workers: tuple[Worker, ...] = ()
    errors: tuple[str, ...] = ()
    oscar_job_pods: int | None = None  # of pending_pods, OSCAR jobs' pods
    jobs_without_pod: int | None = None  # of waiting_jobs, those with no pod yet (OSCAR's "Suspended")

    def to_dict(self) -> dict[str, Any]:
        return {
            "pending_pods": self.pending_pods,
            "oscar_job_pods": self.oscar_job_pods,
            "waiting_jobs": self.waiting_jobs,
            "jobs_without_pod": self.jobs_without_pod,
            "workers": [worker.to_dict() for worker in self.workers],
            "errors": list(self.errors),
        }


@dataclass(frozen=True)
class Decision:
    """What one tick decided for a cluster (:func:`decide`): the action, the worker counts and the VMs to remove,
    the rule that matched and why, with the bounds and signals it saw (``autoscale explain``)."""

    action: Action
    current: int
    target: int
    remove: tuple[str, ...]  # VM ids to delete (scale_down only)
    rule: str  # "min_workers", "schedule:<name> floor", "demand:pending", "idle", "cooldown", "missing-data", ...
    reason: str  # one sentence for a person
    bounds: Bounds
    signals: Signals
    now: datetime
    cooldown_until: datetime | None = None

    @property
    def changes(self) -> bool:
        return self.action in ("scale_up", "scale_down")

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "current": self.current,
            "target": self.target,
            "add": max(0, self.target - self.current),
            "remove": list(self.remove),
            "rule": self.rule,
            "reason": self.reason,
            "bounds": self.bounds.to_dict(),
            "signals": self.signals.to_dict(),
            "now": self.now.isoformat(),
            "cooldown_until": self.cooldown_until.isoformat() if self.cooldown_until is not None else None,
        }


def needed_signals(policy: Policy) -> frozenset[str]:
    """The signals ``policy`` uses: ``pending_pods``, ``waiting_jobs``, ``worker_idle`` (workers' idle times)."""
    demand = policy.demand
    if demand is None:
        return frozenset()
    names = set()
    if demand.pending_pods:
        names.add("pending_pods")
    if demand.oscar_jobs:
        names.add("waiting_jobs")
    if demand.idle_after is not None:
        names.add("worker_idle")
    return frozenset(names)


def needs_signals(policy: Policy) -> bool:
    """True iff the policy has demand rules, i.e. a tick must read signal sources (Kubernetes, OSCAR)."""
    return bool(needed_signals(policy))


def decide(
    policy: Policy, *, current_workers: int, signals: Signals, last_action_at: datetime | None, now: datetime
) -> Decision:
    """Decide what to do this tick; see the module docstring for the rules. Pure."""
    _check(current_workers, signals, last_action_at, now)
    now = now.astimezone(UTC)
    bounds = effective_bounds(policy, now)
    cooldown_until = None
    if last_action_at is not None and policy.cooldown > 0:
        cooldown_until = last_action_at.astimezone(UTC) + timedelta(seconds=policy.cooldown)
    return _Tick(policy, current_workers, signals, bounds, now, cooldown_until).decide()


def _check(current: int, signals: Signals, last_action_at: datetime | None, now: datetime) -> None:
    for name, moment in (("now", now), ("last_action_at", last_action_at)):
        if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
            raise ValueError(f"{name} must be an aware datetime")
    if current < 0:
        raise ValueError(f"current_workers must be >= 0, got {current}")
    counts = (
        ("pending_pods", signals.pending_pods),
        ("waiting_jobs", signals.waiting_jobs),
        ("oscar_job_pods", signals.oscar_job_pods),
        ("jobs_without_pod", signals.jobs_without_pod),
    )
    for name, count in counts:
        if count is not None and count < 0:
            raise ValueError(f"signals.{name} must be >= 0, got {count}")
    if signals.oscar_job_pods and signals.oscar_job_pods > (signals.pending_pods or 0):
        raise ValueError("signals.oscar_job_pods must not exceed signals.pending_pods")
    if signals.jobs_without_pod and signals.jobs_without_pod > (signals.waiting_jobs or 0):
        raise ValueError("signals.jobs_without_pod must not exceed signals.waiting_jobs")
    ids = [worker.vm_id for worker in signals.workers]
    if len(set(ids)) != len(ids):
        raise ValueError("signals.workers lists a VM id twice")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class _Tick:
    """One decision: the inputs, and a ``decide`` that walks the rules in order."""

    def __init__(
        self,
        policy: Policy,
        current: int,
        signals: Signals,
        bounds: Bounds,
        now: datetime,
        cooldown_until: datetime | None,
    ) -> None:
        self.policy = policy
        self.current = current
        self.signals = signals
        self.bounds = bounds
        self.now = now
        self.cooldown_until = cooldown_until

    def decision(
        self, action: Action, rule: str, reason: str, *, target: int | None = None, remove: tuple[str, ...] = ()
    ) -> Decision:
        return Decision(
            action=action,
            current=self.current,
            target=self.current if target is None else target,
            remove=remove,
            rule=rule,
            reason=reason,
            bounds=self.bounds,
            signals=self.signals,
            now=self.now,
            cooldown_until=self.cooldown_until,
        )

    @property
    def cooling(self) -> bool:
        return self.cooldown_until is not None and self.now < self.cooldown_until

    def cooldown_text(self) -> str:
        assert self.cooldown_until is not None
        left = math.ceil((self.cooldown_until - self.now).total_seconds())
        return (
            f"cooldown of {format_duration(self.policy.cooldown)} runs until "
            f"{self.cooldown_until:%Y-%m-%d %H:%M:%S} UTC ({format_duration(left)} left)"
        )

    def step_note(self, moved: int, wanted: int) -> str:
        if moved < wanted:
            return f" (max step {self.policy.max_step}; {wanted - moved} more on later ticks)"
        return ""

    def decide(self) -> Decision:
        return self.missing_data_rule() or self.bounds_rule() or self.demand_rule() or self.idle_rule() or self.steady()

    # b. bounds ------------------------------------------------------------------------------------------------------

    def bounds_rule(self) -> Decision | None:
        floor, ceiling, current, step = self.bounds.floor, self.bounds.ceiling, self.current, self.policy.max_step
        if current < floor:
            target = min(floor, current + step)
            return self.decision(
                "scale_up",
                self.bounds.floor_rule,
                f"{self.bounds.describe_floor()} sets at least {_plural(floor, 'worker')}; {current} running → "
                f"add {target - current}{self.step_note(target - current, floor - current)}",
                target=target,
            )
        if current > ceiling:
            wanted = min(current - ceiling, step)
            remove = self.pick_for_ceiling(wanted)
            head = f"{self.bounds.describe_ceiling()} sets at most {_plural(ceiling, 'worker')}; {current} running"
            if not remove:
                return self.decision(
                    "hold",
                    "unknown-workers",
                    f"{head}, but no worker VM ids were given, so none can be named to remove",
                )
            notes = []
            if wanted < current - ceiling:
                notes.append(f"max step {step}")
            if len(remove) < wanted:
                notes.append(f"only {_plural(len(remove), 'worker VM id')} known")
            if current - len(remove) > ceiling:
                notes.append(f"{current - len(remove) - ceiling} more on later ticks")
            note = f" ({'; '.join(notes)})" if notes else ""
            return self.decision(
                "scale_down",
                self.bounds.ceiling_rule,
                f"{head} → remove {len(remove)} ({', '.join(remove)}){note}",
                target=current - len(remove),
                remove=remove,
            )
        return None

    def pick_for_ceiling(self, count: int) -> tuple[str, ...]:
        """Idle workers first (most idle first), then the workers the caller listed last."""
        idle = sorted(
            (worker for worker in self.signals.workers if worker.idle_seconds is not None),
            key=lambda worker: -(worker.idle_seconds or 0.0),
        )
        busy = [worker for worker in reversed(self.signals.workers) if worker.idle_seconds is None]
        return tuple(worker.vm_id for worker in [*idle, *busy][:count])

    # a. missing data -----------------------------------------------------------------------------------------------

    def missing_data_rule(self) -> Decision | None:
        needed = needed_signals(self.policy)
        if self.signals.errors:
            problem = f"signal source failed: {'; '.join(self.signals.errors)}"
        elif "pending_pods" in needed and self.signals.pending_pods is None:
            problem = "pending pods were not read"
        elif "waiting_jobs" in needed and self.signals.waiting_jobs is None:
            problem = "waiting OSCAR jobs were not read"
        else:
            return None
        floor, ceiling, current = self.bounds.floor, self.bounds.ceiling, self.current
        if current < floor or current > ceiling:
            bounds = f"bounds [{floor}, {ceiling}] wait for a tick that reads its sources"
        else:
            bounds = f"bounds [{floor}, {ceiling}] are met"
        return self.decision(
            "hold",
            "missing-data",
            f"{problem} → holding at {_plural(current, 'worker')} (no scaling on missing data; {bounds})",
        )

    # c. demand -----------------------------------------------------------------------------------------------------

    def demand_rule(self) -> Decision | None:
        demand = self.policy.demand
        if demand is None:
            return None
        pods, jobs, starting = self.demand_counts()
        count = pods + jobs
        if count == 0:
            return None
        parts = []
        if pods:
            oscar = min(self.signals.oscar_job_pods or 0, pods) if demand.oscar_jobs else 0
            parts.append(_plural(pods, "pending pod") + (f" ({oscar} of them OSCAR jobs')" if oscar else ""))
        if jobs:
            parts.append(
                f"{_plural(jobs, 'OSCAR job')} with no pod yet"
                if demand.pending_pods and self.signals.jobs_without_pod is not None
                else _plural(jobs, "waiting OSCAR job")
            )
        what = " and ".join(parts) + self.starting_note(starting)
        rule = "demand:pending+jobs" if pods and jobs else "demand:pending" if pods else "demand:jobs"
        need = math.ceil(count / demand.pods_per_worker)
        ceiling, current = self.bounds.ceiling, self.current
        wanted = min(ceiling, current + need)
        head = (
            f"{what}: {need} more {'worker' if need == 1 else 'workers'} needed ({demand.pods_per_worker} per worker)"
        )
        if wanted <= current:
            return self.decision(
                "none",
                self.bounds.ceiling_rule,
                f"{head}, but {current} running is already the ceiling {ceiling} "
                f"set by {self.bounds.describe_ceiling()}",
            )
        target = min(wanted, current + self.policy.max_step)
        capped = (
            f"; capped at the ceiling {ceiling} set by {self.bounds.describe_ceiling()}"
            if wanted < current + need
            else ""
        )
        if self.cooling:
            return self.decision(
                "hold", "cooldown", f"{head} → would add {target - current}{capped}, but the {self.cooldown_text()}"
            )
        return self.decision(
            "scale_up",
            rule,
            f"{head}; {current} running → add {target - current}{self.step_note(target - current, wanted - current)}"
            f"{capped}",
            target=target,
        )

    def demand_counts(self) -> tuple[int, int, int]:
        """(pending pods counted, OSCAR jobs counted, OSCAR jobs left out because their pod is placed and starting)."""
        demand = self.policy.demand
        assert demand is not None
        pending = self.signals.pending_pods or 0
        waiting = self.signals.waiting_jobs or 0
        if not (demand.pending_pods and demand.oscar_jobs):
            return (pending if demand.pending_pods else 0), (waiting if demand.oscar_jobs else 0), 0
        oscar_pods = min(self.signals.oscar_job_pods or 0, pending)
        without_pod = self.signals.jobs_without_pod
        if without_pod is None:  # not told which jobs have a pod: every waiting job not seen pending counts
            without_pod = max(0, waiting - oscar_pods)
        # Read at other instants, the two sources may disagree a little: never a negative count.
        return pending, without_pod, max(0, waiting - without_pod - oscar_pods)

    @staticmethod
    def starting_note(starting: int) -> str:
        if not starting:
            return ""
        pods = "pod is" if starting == 1 else "pods are"
        return f" ({_plural(starting, 'OSCAR job')} whose {pods} placed and starting: not counted)"

    # d. idle -------------------------------------------------------------------------------------------------------

    def idle_rule(self) -> Decision | None:
        demand = self.policy.demand
        if demand is None or demand.idle_after is None:
            return None
        limit = demand.idle_after
        idle = sorted(
            (w for w in self.signals.workers if w.idle_seconds is not None and w.idle_seconds >= limit),
            key=lambda worker: -(worker.idle_seconds or 0.0),
        )
        if not idle:
            return None
        floor, current = self.bounds.floor, self.current
        head = f"no pending demand; {_plural(len(idle), 'worker')} idle for {format_duration(limit)} or more"
        room = current - floor
        count = min(len(idle), room, self.policy.max_step)
        if count <= 0:
            return self.decision(
                "none",
                self.bounds.floor_rule,
                f"{head}, but {current} running is already the floor {floor} set by {self.bounds.describe_floor()}",
            )
        remove = tuple(worker.vm_id for worker in idle[:count])
        if self.cooling:
            return self.decision(
                "hold",
                "cooldown",
                f"{head} → would remove {count} ({', '.join(remove)}), but the {self.cooldown_text()}",
            )
        notes = []
        if count < len(idle) and count == room:
            notes.append(f"not below the floor {floor} set by {self.bounds.describe_floor()}")
        elif count < len(idle):
            notes.append(f"max step {self.policy.max_step}")
        note = f" ({'; '.join(notes)})" if notes else ""
        return self.decision(
            "scale_down",
            "idle",
            f"{head}; {current} running → remove {count} ({', '.join(remove)}, most idle first){note}",
            target=current - count,
            remove=remove,
        )

    # e. steady -----------------------------------------------------------------------------------------------------

    def steady(self) -> Decision:
        bounds = self.bounds
        where = f"{_plural(self.current, 'worker')} within [{bounds.floor}, {bounds.ceiling}]"
        if bounds.schedule is not None:
            where += f" ({bounds.describe_schedule()})"
        demand = self.policy.demand
        if demand is None:
            return self.decision("none", "steady", f"{where}; the policy has no demand rules")
        idle = (
            f"; no worker idle for {format_duration(demand.idle_after)} or more"
            if demand.idle_after is not None
            else ""
        )
        starting = self.starting_note(self.demand_counts()[2])
        return self.decision("none", "steady", f"{where}; no pending pods or waiting OSCAR jobs{starting}{idle}")
