"""Autoscaling: a per-cluster policy file (``policy``), cron schedules in time zones (``cron``) and the pure
decision function (``engine``). Nothing here touches the network or the clock; the caller reads the signals."""

from __future__ import annotations

from provisioner.autoscale.cron import CronExpr, last_fire
from provisioner.autoscale.engine import Decision, Signals, Worker, decide, needed_signals, needs_signals
from provisioner.autoscale.policy import (
    Bounds,
    Demand,
    Policy,
    ScheduleEntry,
    active_schedule,
    effective_bounds,
    load_policy,
    parse_policy,
)

__all__ = [
    "Bounds",
    "CronExpr",
    "Decision",
    "Demand",
    "Policy",
    "ScheduleEntry",
    "Signals",
    "Worker",
    "active_schedule",
    "decide",
    "effective_bounds",
    "last_fire",
    "load_policy",
    "needed_signals",
    "needs_signals",
    "parse_policy",
]
