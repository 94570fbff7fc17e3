"""Autoscaling policy: one YAML file per cluster, read and checked here. Pure apart from ``load_policy``'s read.

Format (version 1)::

    version: 1                # required; the only version this reader knows
    min_workers: 1            # required, >= 0
    max_workers: 10           # required, >= min_workers and <= 100 (the template's limit)
    cooldown: 5m              # optional (default 5m): seconds as an integer, or "90s", "5m", "1h", "1h30m"; 0 = none
    max_step: 3               # optional (default 3): most workers added or removed in one action, >= 1
    schedules:                # optional
      - name: office-hours    # required, unique
        cron: "0 8 * * MON-FRI"   # 5-field cron, see provisioner.autoscale.cron (quote it: YAML reads * as an alias)
        timezone: Europe/Madrid   # required: an IANA time zone name ("UTC" works)
        min: 6                # a floor (at least 6), and/or
        max: 8                # a ceiling (at most 8); at least one of the two
    demand:                   # optional; without it no signal source is read and only the bounds apply
      pending_pods: true      # default true: pods pending outside kube-system count as demand
      oscar_jobs: true        # default true: OSCAR jobs waiting count as demand
      pods_per_worker: 4      # default 1: one worker added per this many pending pods/jobs (rounded up)
      idle_after: 15m         # default 15m: a worker idle this long may be removed; "off" (false) disables removal

Schedule semantics: the entry that fired most recently (over all entries, by ``cron.last_fire`` in each entry's
time zone) is in effect and sets its floor and/or ceiling until another entry fires. The bound an entry does not set
falls back to the policy's own (``min_workers`` or ``max_workers``). With no entry fired yet (within
``cron.SEARCH_DAYS``), none applies. If two entries fire at the same instant, the one listed later wins. Effective
bounds: floor = max(min_workers, entry.min), ceiling = min(max_workers, entry.max); validation makes floor <= ceiling
always hold.

Every refusal is an ``InputError`` (exit 2) whose one-line message starts with the field (``max_workers``,
``schedules[1].cron``, ``demand.idle_after``; schedule indexes count from 0) and states the rule.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from provisioner.autoscale.cron import CronExpr, last_fire
from provisioner.errors import InputError
from provisioner.yamlfile import read_yaml_mapping

POLICY_VERSION = 1
MAX_WORKERS_LIMIT = 100  # the Kubernetes template's limit on worker nodes
DEFAULT_COOLDOWN = 300
DEFAULT_MAX_STEP = 3
DEFAULT_PODS_PER_WORKER = 1
DEFAULT_IDLE_AFTER = 900

_TOP_KEYS = ("version", "min_workers", "max_workers", "cooldown", "max_step", "schedules", "demand")
_SCHEDULE_KEYS = ("name", "cron", "timezone", "min", "max")
_DEMAND_KEYS = ("pending_pods", "oscar_jobs", "pods_per_worker", "idle_after")
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_HELP = "seconds as a whole number, or text like '90s', '5m', '1h', '1h30m'"


def format_duration(seconds: int) -> str:
    """``900`` -> ``"15m"``, ``5400`` -> ``"1h30m"``, ``0`` -> ``"0s"``."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text or "0s"


@dataclass(frozen=True)
class ScheduleEntry:
    """One entry of the policy's ``schedules``: a cron expression in a time zone; the entry that fired last sets
    its floor and/or ceiling (see :class:`Bounds`)."""

    name: str
    cron: CronExpr
    tz: ZoneInfo
    floor: int | None = None  # "min" in the file
    ceiling: int | None = None  # "max" in the file

    def last_fire(self, now: datetime) -> datetime | None:
        return last_fire(self.cron, self.tz, now)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "cron": self.cron.text, "timezone": self.tz.key}
        if self.floor is not None:
            data["min"] = self.floor
        if self.ceiling is not None:
            data["max"] = self.ceiling
        return data


@dataclass(frozen=True)
class Demand:
    """The policy's ``demand`` section: which signals count as demand, how many pods or jobs one worker takes, and
    when an idle worker may be removed."""

    pending_pods: bool = True
    oscar_jobs: bool = True
    pods_per_worker: int = DEFAULT_PODS_PER_WORKER
    idle_after: int | None = DEFAULT_IDLE_AFTER  # seconds; None = never remove idle workers

    def to_dict(self) -> dict[str, Any]:
        return {
            "pending_pods": self.pending_pods,
            "oscar_jobs": self.oscar_jobs,
            "pods_per_worker": self.pods_per_worker,
            "idle_after": False if self.idle_after is None else self.idle_after,
        }


@dataclass(frozen=True)
class Policy:
    """One cluster's autoscaling policy, read from its YAML file and checked: its bounds, cooldown, step per action,
    schedules and demand (None: only the bounds apply)."""

    min_workers: int
    max_workers: int
    cooldown: int = DEFAULT_COOLDOWN  # seconds
    max_step: int = DEFAULT_MAX_STEP
    schedules: tuple[ScheduleEntry, ...] = ()
    demand: Demand | None = None
    version: int = POLICY_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The policy in the file's format (durations in seconds): JSON-serialisable, and ``parse_policy`` of it
        gives back an equal policy."""
        data: dict[str, Any] = {
            "version": self.version,
            "min_workers": self.min_workers,
            "max_workers": self.max_workers,
            "cooldown": self.cooldown,
            "max_step": self.max_step,
            "schedules": [entry.to_dict() for entry in self.schedules],
        }
        if self.demand is not None:
            data["demand"] = self.demand.to_dict()
        return data


@dataclass(frozen=True)
class Bounds:
    """The floor and ceiling in effect at one instant, and where they come from."""

    floor: int
    ceiling: int
    schedule: ScheduleEntry | None = None  # the entry in effect, if any
    fired_at: datetime | None = None  # when it fired (UTC)

    @property
    def floor_rule(self) -> str:
        if self.schedule is not None and self.schedule.floor is not None and self.schedule.floor == self.floor:
            return f"schedule:{self.schedule.name} floor"
        return "min_workers"

    @property
    def ceiling_rule(self) -> str:
        if self.schedule is not None and self.schedule.ceiling is not None and self.schedule.ceiling == self.ceiling:
            return f"schedule:{self.schedule.name} ceiling"
        return "max_workers"

    def describe_schedule(self) -> str:
        """``schedule 'office-hours' (fired 2026-03-30 08:00 Europe/Madrid)``, or '' with none in effect."""
        if self.schedule is None or self.fired_at is None:
            return ""
        local = self.fired_at.astimezone(self.schedule.tz)
        return f"schedule {self.schedule.name!r} (fired {local:%Y-%m-%d %H:%M} {self.schedule.tz.key})"

    def describe_floor(self) -> str:
        return self.describe_schedule() if self.floor_rule != "min_workers" else "min_workers"

    def describe_ceiling(self) -> str:
        return self.describe_schedule() if self.ceiling_rule != "max_workers" else "max_workers"

    def to_dict(self) -> dict[str, Any]:
        return {
            "floor": self.floor,
            "ceiling": self.ceiling,
            "floor_rule": self.floor_rule,
            "ceiling_rule": self.ceiling_rule,
            "schedule": self.schedule.name if self.schedule is not None else None,
            "schedule_fired_at": self.fired_at.isoformat() if self.fired_at is not None else None,
        }


def active_schedule(policy: Policy, now: datetime) -> tuple[ScheduleEntry, datetime] | None:
    """The entry in effect at ``now`` and when it fired (UTC): the latest to fire; on a tie, the later listed."""
    best: tuple[ScheduleEntry, datetime] | None = None
    for entry in policy.schedules:
        fired = entry.last_fire(now)
        if fired is not None and (best is None or fired >= best[1]):
            best = (entry, fired)
    return best


def effective_bounds(policy: Policy, now: datetime) -> Bounds:
    active = active_schedule(policy, now)
    if active is None:
        return Bounds(policy.min_workers, policy.max_workers)
    entry, fired = active
    floor = policy.min_workers if entry.floor is None else max(policy.min_workers, entry.floor)
    ceiling = policy.max_workers if entry.ceiling is None else min(policy.max_workers, entry.ceiling)
    return Bounds(floor, ceiling, entry, fired.astimezone(UTC))


# --- reading --------------------------------------------------------------------------------------------------------


def load_policy(path: Path | str) -> Policy:
    """Read and check the policy file at ``path``; ``InputError`` (exit 2) names the field on any problem."""
    path = Path(path)
    label = f"policy file {path}"
    data = read_yaml_mapping(path, label=label, field="policy", expected="a YAML mapping (min_workers, ...)")
    return parse_policy(data, label)


def parse_policy(data: object, source: str) -> Policy:
    """Check ``data`` (what YAML gave) and build the policy. ``source`` names it in messages ("policy file x")."""
    return _Reader(source).policy(data)


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field: str, message: str, *, hint: str | None = None) -> NoReturn:
        raise InputError(f"{message} (in {self.source})", field=field, hint=hint)

    def mapping(self, data: object, field: str, known: tuple[str, ...], what: str) -> Mapping[str, Any]:
        if not isinstance(data, dict):
            self.fail(field, f"must be a mapping ({what}), got {_kind(data)}")
        for key in data:
            if not isinstance(key, str) or key not in known:
                close = _nearest(str(key), known)
                suggestion = f"; did you mean {close!r}?" if close else ""
                name = f"{field}.{key}" if field != "policy" else str(key)
                self.fail(name, f"unknown key{suggestion} (known: {', '.join(known)})")
        return data

    def integer(self, value: object, field: str, *, minimum: int, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"must be a whole number, got {_kind(value)}")
        if value < minimum:
            self.fail(field, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.fail(field, f"must be at most {maximum}, got {value}")
        return value

    def boolean(self, value: object, field: str) -> bool:
        if not isinstance(value, bool):
            self.fail(field, f"must be true or false, got {_kind(value)}")
        return value

    def duration(self, value: object, field: str, *, allow_zero: bool) -> int:
        seconds: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            seconds = value
        elif isinstance(value, str):
            text = value.strip().lower()
            match = _DURATION.fullmatch(text)
            if text.isascii() and text.isdigit():
                seconds = int(text)
            elif text and match:
                hours, minutes, secs = (int(group or 0) for group in match.groups())
                seconds = hours * 3600 + minutes * 60 + secs
        if seconds is None:
            self.fail(field, f"must be a duration ({_DURATION_HELP}), got {_kind(value)}")
        if seconds < 0 or (seconds == 0 and not allow_zero):
            rule = "0 or more" if allow_zero else "more than 0"
            self.fail(field, f"must be a duration of {rule} seconds, got {value!r}")
        return seconds

    def policy(self, data: object) -> Policy:
        top = self.mapping(data, "policy", _TOP_KEYS, "version, min_workers, max_workers, ...")
        for required in ("version", "min_workers", "max_workers"):
            if top.get(required) is None:
                self.fail(required, "missing (required)")
        version = top["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version != POLICY_VERSION:
            self.fail("version", f"must be {POLICY_VERSION}, got {top['version']!r}")
        min_workers = self.integer(top["min_workers"], "min_workers", minimum=0, maximum=MAX_WORKERS_LIMIT)
        max_workers = self.integer(top["max_workers"], "max_workers", minimum=0, maximum=MAX_WORKERS_LIMIT)
        if max_workers < min_workers:
            self.fail("max_workers", f"must be at least min_workers ({min_workers}), got {max_workers}")
        cooldown = DEFAULT_COOLDOWN
        if top.get("cooldown") is not None:
            cooldown = self.duration(top["cooldown"], "cooldown", allow_zero=True)
        max_step = DEFAULT_MAX_STEP
        if top.get("max_step") is not None:
            max_step = self.integer(top["max_step"], "max_step", minimum=1)
        schedules = self.schedules(top.get("schedules"), min_workers, max_workers)
        demand = self.demand(top["demand"]) if top.get("demand") is not None else None
        return Policy(min_workers, max_workers, cooldown, max_step, schedules, demand)

    def schedules(self, data: object, min_workers: int, max_workers: int) -> tuple[ScheduleEntry, ...]:
        if data is None:
            return ()
        if not isinstance(data, list):
            self.fail("schedules", f"must be a list of schedule entries, got {_kind(data)}")
        entries: list[ScheduleEntry] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(data):
            entry = self.schedule(item, f"schedules[{index}]", min_workers, max_workers)
            if entry.name in seen:
                self.fail(
                    f"schedules[{index}].name", f"duplicate name {entry.name!r} (also schedules[{seen[entry.name]}])"
                )
            seen[entry.name] = index
            entries.append(entry)
        return tuple(entries)

    def schedule(self, data: object, field: str, min_workers: int, max_workers: int) -> ScheduleEntry:
        item = self.mapping(data, field, _SCHEDULE_KEYS, "name, cron, timezone, min and/or max")
        for required in ("name", "cron", "timezone"):
            if item.get(required) is None:
                self.fail(f"{field}.{required}", "missing (required)")
        name = item["name"]
        if not isinstance(name, str) or not name.strip():
            self.fail(f"{field}.name", f"must be a non-empty text, got {_kind(name)}")
        name = name.strip()
        cron_text = item["cron"]
        if not isinstance(cron_text, str):
            self.fail(f"{field}.cron", f"must be a cron expression in quotes, got {_kind(cron_text)}")
        try:
            cron = CronExpr.parse(cron_text)
        except ValueError as exc:
            self.fail(
                f"{field}.cron",
                f"invalid cron expression {cron_text!r}: {exc}",
                hint="five fields: minute hour day-of-month month day-of-week, e.g. '0 8 * * MON-FRI'",
            )
        tz = self.timezone(item["timezone"], f"{field}.timezone")
        floor = ceiling = None
        if item.get("min") is not None:
            floor = self.integer(item["min"], f"{field}.min", minimum=0)
            if floor > max_workers:
                self.fail(f"{field}.min", f"at least {floor} contradicts max_workers ({max_workers})")
        if item.get("max") is not None:
            ceiling = self.integer(item["max"], f"{field}.max", minimum=0)
            if ceiling < min_workers:
                self.fail(f"{field}.max", f"at most {ceiling} contradicts min_workers ({min_workers})")
        if floor is None and ceiling is None:
            self.fail(field, f"schedule {name!r} sets neither min nor max")
        if floor is not None and ceiling is not None and floor > ceiling:
            self.fail(f"{field}.min", f"min ({floor}) is greater than max ({ceiling})")
        return ScheduleEntry(name, cron, tz, floor, ceiling)

    def timezone(self, value: object, field: str) -> ZoneInfo:
        hint = "use an IANA time zone name such as Europe/Madrid or UTC"
        if not isinstance(value, str) or not value.strip():
            self.fail(field, f"must be a time zone name, got {_kind(value)}", hint=hint)
        try:
            return ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError, OSError):
            self.fail(field, f"unknown time zone {value!r}", hint=hint)

    def demand(self, data: object) -> Demand:
        item = self.mapping(data, "demand", _DEMAND_KEYS, ", ".join(_DEMAND_KEYS))
        pending_pods = self.boolean(item.get("pending_pods", True), "demand.pending_pods")
        oscar_jobs = self.boolean(item.get("oscar_jobs", True), "demand.oscar_jobs")
        pods_per_worker = DEFAULT_PODS_PER_WORKER
        if item.get("pods_per_worker") is not None:
            pods_per_worker = self.integer(item["pods_per_worker"], "demand.pods_per_worker", minimum=1)
        idle_after: int | None = DEFAULT_IDLE_AFTER
        raw_idle = item.get("idle_after")
        if raw_idle is False or (isinstance(raw_idle, str) and raw_idle.strip().lower() in ("off", "never")):
            idle_after = None
        elif raw_idle is not None:
            idle_after = self.duration(raw_idle, "demand.idle_after", allow_zero=False)
        if not (pending_pods or oscar_jobs or idle_after is not None):
            self.fail("demand", "turns no rule on: pending_pods and oscar_jobs are false and idle_after is off")
        return Demand(pending_pods, oscar_jobs, pods_per_worker, idle_after)


def _nearest(key: str, known: tuple[str, ...]) -> str | None:
    """The known key the user most likely meant: a close spelling, or one that starts with what they wrote."""
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return close[0]
    prefixed = [name for name in known if key and name.startswith(key.lower())]
    return prefixed[0] if len(prefixed) == 1 else None


def _kind(value: object) -> str:
    """How a bad value reads in a message: the value for scalars, the type for containers."""
    if isinstance(value, dict | list):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
