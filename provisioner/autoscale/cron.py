"""Five-field cron expressions for autoscaling schedules, evaluated in a time zone. Pure: no clock, no disk.

Syntax: ``minute hour day-of-month month day-of-week``.

- Each field is a comma-separated list of items; an item is ``*``, a value, a range ``a-b``, optionally followed
  by a step ``/n`` (``*/15``, ``1-5``, ``0-30/10``). ``a/n`` means ``a`` through the field's last value, step n.
- Months accept ``JAN``-``DEC``, days of the week ``SUN``-``SAT`` (case-insensitive). Day of the week 0 and 7 are
  both Sunday; ``SUN`` as the end of a range means 7, so ``FRI-SUN`` works.
- Day-of-month and day-of-week combine like Vixie cron: when both fields are restricted (neither starts with
  ``*``) a day matches if EITHER matches (``0 8 1 * MON`` fires on the 1st and on every Monday); otherwise both
  must match (``*/2`` counts as unrestricted, as in Vixie cron).
- Macros: ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``), ``@hourly``.
- An expression whose day-of-month can never occur in its months (``0 0 31 2 *``) is refused.

Time zones and daylight-saving changes: an expression names wall-clock times in a time zone.

- A wall time that does not exist (the spring-forward gap, e.g. 02:30 in Europe/Madrid on the last Sunday of
  March, when clocks jump from 02:00 to 03:00) fires at the first instant after the gap: 03:00 local. Every
  minute inside the gap maps to that same instant, so ``*/15 2 * * *`` fires once that night, at 03:00.
- An ambiguous wall time (the fall-back overlap, e.g. 02:30 on the last Sunday of October, which happens twice)
  fires once, at its first occurrence (still on summer time).

``last_fire`` answers "when did this expression last fire at or before now?". It walks back day by day (at most
``SEARCH_DAYS`` days) and, on the first matching day, bisects that day's sorted firing times (wall-clock to UTC is
monotonic with the rules above), so a call costs a few hundred set look-ups at worst, never a minute-by-minute scan.
An expression that has not fired within ``SEARCH_DAYS`` (e.g. ``0 0 29 2 *`` three years after a leap day)
gives ``None``.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SEARCH_DAYS = 400

_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1
    )
}
_DAY_NAMES = {name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
# Longest length of each month (February: 29, leap years).
_MONTH_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}

MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True)
class _FieldSpec:
    """The rules of one of the five cron fields: its name, the values its text accepts, what ``*`` stands for,
    and the names it takes (months, days of the week)."""

    name: str
    low: int
    high: int  # highest value accepted in the text (7 for day-of-week)
    star_high: int  # highest value '*' stands for (6 for day-of-week)
    names: Mapping[str, int]


_FIELDS = (
    _FieldSpec("minute", 0, 59, 59, {}),
    _FieldSpec("hour", 0, 23, 23, {}),
    _FieldSpec("day-of-month", 1, 31, 31, {}),
    _FieldSpec("month", 1, 12, 12, _MONTH_NAMES),
    _FieldSpec("day-of-week", 0, 7, 6, _DAY_NAMES),
)


def _value(spec: _FieldSpec, token: str, field_text: str, *, range_end: bool = False) -> int:
    where = f"{spec.name} field {field_text!r}"
    if token.isascii() and token.isdigit():
        number = int(token)
    elif token.upper() in spec.names:
        number = spec.names[token.upper()]
        if range_end and spec.name == "day-of-week" and number == 0:
            number = 7  # FRI-SUN
    else:
        if not token:
            raise ValueError(f"{where}: missing value")
        names = f" or a name ({'/'.join(spec.names)})" if spec.names else ""
        raise ValueError(f"{where}: {token!r} is not a number{names}")
    if not spec.low <= number <= spec.high:
        raise ValueError(f"{where}: {number} is out of range {spec.low}-{spec.high}")
    return number


def _parse_field(spec: _FieldSpec, text: str) -> frozenset[int]:
    where = f"{spec.name} field {text!r}"
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ValueError(f"{where}: empty item in the list")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not (step_text.isascii() and step_text.isdigit()):
                raise ValueError(f"{where}: step {step_text!r} is not a whole number")
            step = int(step_text)
            if step < 1:
                raise ValueError(f"{where}: step must be at least 1")
        if base == "*":
            low, high = spec.low, spec.star_high
        elif "-" in base:
            first, _, last = base.partition("-")
            low = _value(spec, first, text)
            high = _value(spec, last, text, range_end=True)
            if low > high:
                raise ValueError(f"{where}: range {base!r} goes backwards ({low} > {high})")
        else:
            low = _value(spec, base, text)
            high = spec.high if slash else low
        values.update(range(low, high + 1, step))
    if spec.name == "day-of-week" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


@dataclass(frozen=True)
class CronExpr:
    """A parsed cron expression. Build with ``CronExpr.parse``; ``text`` is what the user wrote."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday ... 6 = Saturday
    days_restricted: bool
    weekdays_restricted: bool
    times: tuple[tuple[int, int], ...] = field(repr=False, compare=False)  # sorted (hour, minute) of one day

    @classmethod
    def parse(cls, text: str) -> CronExpr:
        """Parse ``text``; ``ValueError`` names the field and what is wrong with it."""
        stripped = text.strip()
        if not stripped:
            raise ValueError("empty cron expression")
        if stripped.startswith("@"):
            macro = stripped.lower()
            if macro not in MACROS:
                raise ValueError(f"unknown macro {stripped!r} (known: {', '.join(MACROS)})")
            fields = MACROS[macro].split()
        else:
            fields = stripped.split()
            if len(fields) != 5:
                extra = "; seconds and year fields are not supported" if len(fields) in (6, 7) else ""
                raise ValueError(
                    f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}{extra}"
                )
        minutes, hours, days, months, weekdays = (
            _parse_field(spec, part) for spec, part in zip(_FIELDS, fields, strict=True)
        )
        days_restricted = not fields[2].startswith("*")
        weekdays_restricted = not fields[4].startswith("*")
        if not (days_restricted and weekdays_restricted) and not any(
            day <= _MONTH_DAYS[month] for month in months for day in days
        ):
            raise ValueError(f"day-of-month field {fields[2]!r}: never occurs in month field {fields[3]!r}")
        times = tuple(sorted((hour, minute) for hour in hours for minute in minutes))
        return cls(stripped, minutes, hours, days, months, weekdays, days_restricted, weekdays_restricted, times)

    def __str__(self) -> str:
        return self.text

    def matches_day(self, day: date) -> bool:
        """True when the expression fires at some time of the calendar ``day`` (Vixie day-of-month/week rule)."""
        if day.month not in self.months:
            return False
        day_ok = day.day in self.days
        weekday_ok = day.isoweekday() % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok

    def matches(self, wall: datetime) -> bool:
        """True when the wall-clock time ``wall`` (its date, hour and minute; tzinfo ignored) is a firing time."""
        return wall.minute in self.minutes and wall.hour in self.hours and self.matches_day(wall.date())


def wall_to_utc(day: date, hour: int, minute: int, tz: ZoneInfo) -> datetime:
    """The instant (aware, UTC) a wall time in ``tz`` names, with the DST rules in the module docstring."""
    wall = datetime.combine(day, time(hour, minute))
    first = wall.replace(tzinfo=tz).astimezone(UTC)  # fold=0: the first occurrence of an ambiguous time
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=0 reads the wall time with the offset before the jump, fold=1 with the one after. The
    # jump lies between the two readings; find (to the second) the first instant whose wall time is past ``wall``.
    other = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    low, high = min(first, other), max(first, other)
    before, after = 0, int((high - low).total_seconds())
    while after - before > 1:
        middle = (before + after) // 2
        if (low + timedelta(seconds=middle)).astimezone(tz).replace(tzinfo=None) > wall:
            after = middle
        else:
            before = middle
    return low + timedelta(seconds=after)


def last_fire(expr: CronExpr, tz: ZoneInfo, now: datetime) -> datetime | None:
    """The most recent instant ≤ ``now`` at which ``expr`` fires in ``tz`` (aware, UTC), or None if it has not
    fired within ``SEARCH_DAYS`` days. ``now`` must be an aware datetime."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    now_utc = now.astimezone(UTC)
    # Start one day ahead: with a transition at midnight, a wall time of tomorrow's date can name an instant ≤ now.
    day = now_utc.astimezone(tz).date() + timedelta(days=1)
    for _ in range(SEARCH_DAYS + 2):
        if expr.matches_day(day):
            fired = _latest_on(expr, day, tz, now_utc)
            if fired is not None:
                return fired
        day -= timedelta(days=1)
    return None


def _latest_on(expr: CronExpr, day: date, tz: ZoneInfo, now_utc: datetime) -> datetime | None:
    """The latest firing instant on ``day`` that is ≤ ``now_utc``, by bisection over the day's sorted times."""

    def instant(hour_minute: tuple[int, int]) -> datetime:
        return wall_to_utc(day, hour_minute[0], hour_minute[1], tz)

    index = bisect.bisect_right(expr.times, now_utc, key=instant)
    return instant(expr.times[index - 1]) if index else None
