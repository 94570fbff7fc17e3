"""Cron expressions: parsing (good and bad, with precise messages) and last_fire across time zones and DST changes."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.autoscale.cron import SEARCH_DAYS, CronExpr, last_fire, wall_to_utc

MADRID = ZoneInfo("Europe/Madrid")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_madrid_zone_available() -> None:
    assert MADRID.key == "Europe/Madrid"
    assert datetime(2026, 7, 1, 12, tzinfo=MADRID).utcoffset() == timedelta(hours=2)


# --- parsing --------------------------------------------------------------------------------------------------------

ALL_MINUTES = frozenset(range(60))


@pytest.mark.parametrize(
    ("text", "attribute", "expected"),
    [
        ("*/15 * * * *", "minutes", {0, 15, 30, 45}),
        ("0-30/10 * * * *", "minutes", {0, 10, 20, 30}),
        ("5/20 * * * *", "minutes", {5, 25, 45}),
        ("1,2,30-32 * * * *", "minutes", {1, 2, 30, 31, 32}),
        ("* * * * *", "minutes", ALL_MINUTES),
        ("0 */6 * * *", "hours", {0, 6, 12, 18}),
        ("0 8-10,20 * * *", "hours", {8, 9, 10, 20}),
        ("0 0 1,15 * *", "days", {1, 15}),
        ("0 0 * JAN-MAR *", "months", {1, 2, 3}),
        ("0 0 * jan,Jul,DEC *", "months", {1, 7, 12}),
        ("0 0 * */3 *", "months", {1, 4, 7, 10}),
        ("0 8 * * MON-FRI", "weekdays", {1, 2, 3, 4, 5}),
        ("0 8 * * mon,wed,Fri", "weekdays", {1, 3, 5}),
        ("0 0 * * 0", "weekdays", {0}),
        ("0 0 * * 7", "weekdays", {0}),
        ("0 0 * * 5-7", "weekdays", {5, 6, 0}),
        ("0 0 * * FRI-SUN", "weekdays", {5, 6, 0}),
        ("0 0 * * SAT,SUN", "weekdays", {6, 0}),
        ("0 0 * * *", "weekdays", {0, 1, 2, 3, 4, 5, 6}),
        ("  0   8 * *   1  ", "weekdays", {1}),
    ],
)
def test_parse_fields(text: str, attribute: str, expected: set[int]) -> None:
    assert getattr(CronExpr.parse(text), attribute) == frozenset(expected)


@pytest.mark.parametrize(
    ("macro", "same_as"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@DAILY", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_macros(macro: str, same_as: str) -> None:
    parsed, plain = CronExpr.parse(macro), CronExpr.parse(same_as)
    assert parsed.text == macro
    for attribute in ("minutes", "hours", "days", "months", "weekdays", "days_restricted", "weekdays_restricted"):
        assert getattr(parsed, attribute) == getattr(plain, attribute)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty cron expression"),
        ("   ", "empty cron expression"),
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("0 0 * * * *", "got 6; seconds and year fields are not supported"),
        ("60 * * * *", "minute field '60': 60 is out of range 0-59"),
        ("* 24 * * *", "hour field '24': 24 is out of range 0-23"),
        ("0 8-25 * * *", "hour field '8-25': 25 is out of range 0-23"),
        ("* * 0 * *", "day-of-month field '0': 0 is out of range 1-31"),
        ("* * 32 * *", "day-of-month field '32': 32 is out of range 1-31"),
        ("* * * 13 *", "month field '13': 13 is out of range 1-12"),
        ("* * * * 8", "day-of-week field '8': 8 is out of range 0-7"),
        ("*/0 * * * *", "minute field '*/0': step must be at least 1"),
        ("*/x * * * *", "minute field '*/x': step 'x' is not a whole number"),
        ("*/-5 * * * *", "step '-5' is not a whole number"),
        ("30-10 * * * *", "minute field '30-10': range '30-10' goes backwards (30 > 10)"),
        ("0 0 * * FRI-MON", "range 'FRI-MON' goes backwards (5 > 1)"),
        ("1,,2 * * * *", "minute field '1,,2': empty item in the list"),
        ("1- * * * *", "minute field '1-': missing value"),
        ("MON * * * *", "minute field 'MON': 'MON' is not a number"),
        ("0 0 * FOO *", "month field 'FOO': 'FOO' is not a number or a name (JAN/FEB/"),
        ("0 0 * * MONDAY", "day-of-week field 'MONDAY': 'MONDAY' is not a number or a name (SUN/MON/"),
        ("0 0 * * MON-FRI/", "step '' is not a whole number"),
        ("0 0 1.5 * *", "day-of-month field '1.5': '1.5' is not a number"),
        ("@reboot", "unknown macro '@reboot' (known: @yearly"),
        ("@every 5m", "unknown macro"),
        ("0 0 31 2 *", "day-of-month field '31': never occurs in month field '2'"),
        ("0 0 30,31 FEB *", "never occurs in month field 'FEB'"),
        ("0 0 31 4,6,9,11 *", "never occurs"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        CronExpr.parse(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_impossible_day_with_restricted_weekday_is_allowed() -> None:
    # Vixie OR rule: "31 February or any Monday" still fires on Mondays.
    expr = CronExpr.parse("0 0 31 2 MON")
    assert expr.matches_day(date(2026, 2, 2))  # a Monday in February


@pytest.mark.parametrize(
    ("text", "day", "fires"),
    [
        # both restricted: either matches (Vixie OR rule)
        ("0 8 1 * MON", date(2026, 4, 1), True),  # Wednesday the 1st
        ("0 8 1 * MON", date(2026, 4, 6), True),  # Monday the 6th
        ("0 8 1 * MON", date(2026, 4, 7), False),  # Tuesday the 7th
        ("0 8 13 * FRI", date(2026, 3, 13), True),  # Friday the 13th
        ("0 8 13 * FRI", date(2026, 4, 13), True),  # Monday the 13th
        ("0 8 13 * FRI", date(2026, 4, 10), True),  # Friday the 10th
        # one side '*': both must match
        ("0 8 1 * *", date(2026, 4, 6), False),
        ("0 8 * * MON", date(2026, 4, 1), False),
        ("0 8 * * MON", date(2026, 4, 6), True),
        # '*/2' counts as unrestricted (as in Vixie cron): AND
        ("0 8 */2 * MON", date(2026, 4, 6), False),  # Monday, even day
        ("0 8 */2 * MON", date(2026, 4, 13), True),  # Monday, odd day
        ("0 8 */2 * MON", date(2026, 4, 1), False),  # odd day, Wednesday
        # month restricts both
        ("0 8 1 JAN MON", date(2026, 4, 6), False),
        ("0 8 * * 7", date(2026, 3, 29), True),  # Sunday
        ("0 8 * * 0", date(2026, 3, 29), True),
    ],
)
def test_day_matching(text: str, day: date, fires: bool) -> None:
    assert CronExpr.parse(text).matches_day(day) is fires


def test_matches_wall_time() -> None:
    expr = CronExpr.parse("*/15 8-9 * * MON-FRI")
    assert expr.matches(datetime(2026, 3, 30, 8, 45))
    assert not expr.matches(datetime(2026, 3, 30, 8, 46))
    assert not expr.matches(datetime(2026, 3, 29, 8, 45))  # Sunday


# --- last_fire ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "zone", "now", "expected"),
    [
        # plain daily, on both sides of the spring change in Madrid (last Sunday of March 2026 = 29th)
        ("0 8 * * *", "Europe/Madrid", utc(2026, 3, 27, 12), utc(2026, 3, 27, 7)),  # CET: 08:00 = 07:00 UTC
        ("0 8 * * *", "Europe/Madrid", utc(2026, 3, 28, 12), utc(2026, 3, 28, 7)),
        ("0 8 * * *", "Europe/Madrid", utc(2026, 3, 29, 12), utc(2026, 3, 29, 6)),  # CEST: 08:00 = 06:00 UTC
        ("0 8 * * *", "Europe/Madrid", utc(2026, 3, 30, 12), utc(2026, 3, 30, 6)),
        ("0 8 * * *", "Europe/Madrid", utc(2026, 3, 30, 5, 59), utc(2026, 3, 29, 6)),  # not yet today
        ("0 8 * * *", "Europe/Madrid", utc(2026, 10, 26, 12), utc(2026, 10, 26, 7)),  # back on CET
        ("0 8 * * *", "Europe/Madrid", utc(2026, 3, 30, 6), utc(2026, 3, 30, 6)),  # now itself counts
        # spring forward: 02:30 does not exist on 2026-03-29 -> fires at 03:00 CEST = 01:00 UTC
        ("30 2 * * *", "Europe/Madrid", utc(2026, 3, 29, 12), utc(2026, 3, 29, 1)),
        ("30 2 * * *", "Europe/Madrid", utc(2026, 3, 29, 1), utc(2026, 3, 29, 1)),
        ("30 2 * * *", "Europe/Madrid", utc(2026, 3, 29, 0, 59), utc(2026, 3, 28, 1, 30)),  # day before: CET
        ("0 2 * * *", "Europe/Madrid", utc(2026, 3, 29, 12), utc(2026, 3, 29, 1)),
        ("*/15 2 * * *", "Europe/Madrid", utc(2026, 3, 29, 12), utc(2026, 3, 29, 1)),  # whole gap -> 03:00
        ("0 3 * * *", "Europe/Madrid", utc(2026, 3, 29, 12), utc(2026, 3, 29, 1)),
        ("59 1 * * *", "Europe/Madrid", utc(2026, 3, 29, 12), utc(2026, 3, 29, 0, 59)),
        # fall back: 02:30 happens twice on 2026-10-25 -> fires once, at the first (CEST, 00:30 UTC)
        ("30 2 * * *", "Europe/Madrid", utc(2026, 10, 25, 12), utc(2026, 10, 25, 0, 30)),
        ("30 2 * * *", "Europe/Madrid", utc(2026, 10, 25, 1, 45), utc(2026, 10, 25, 0, 30)),  # during 2nd 02:xx
        ("30 2 * * *", "Europe/Madrid", utc(2026, 10, 25, 0, 29), utc(2026, 10, 24, 0, 30)),
        ("30 2 * * *", "Europe/Madrid", utc(2026, 10, 26, 12), utc(2026, 10, 26, 1, 30)),  # CET afterwards
        ("0 3 * * *", "Europe/Madrid", utc(2026, 10, 25, 12), utc(2026, 10, 25, 2)),
        ("*/20 2 * * *", "Europe/Madrid", utc(2026, 10, 25, 12), utc(2026, 10, 25, 0, 40)),
        # a 30-minute DST shift (Lord Howe Island, 2026-10-04 02:00 -> 02:30)
        ("15 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 4, 12), utc(2026, 10, 3, 15, 30)),
        # US spring forward (2026-03-08 02:00 -> 03:00)
        ("30 2 * * *", "America/New_York", utc(2026, 3, 8, 12), utc(2026, 3, 8, 7)),
        # weekdays vs weekends
        ("0 8 * * MON-FRI", "Europe/Madrid", utc(2026, 3, 29, 12), utc(2026, 3, 27, 7)),  # Sunday -> Friday
        ("0 8 * * MON-FRI", "Europe/Madrid", utc(2026, 3, 30, 5, 59), utc(2026, 3, 27, 7)),  # Monday 07:59
        ("0 8 * * MON-FRI", "Europe/Madrid", utc(2026, 3, 30, 6), utc(2026, 3, 30, 6)),  # Monday 08:00
        ("0 10 * * SAT,SUN", "Europe/Madrid", utc(2026, 4, 1, 12), utc(2026, 3, 29, 8)),  # Wed -> Sun (CEST)
        ("0 10 * * SAT,SUN", "Europe/Madrid", utc(2026, 3, 29, 8, 30), utc(2026, 3, 29, 8)),
        ("0 10 * * 6,7", "Europe/Madrid", utc(2026, 3, 29, 7, 59), utc(2026, 3, 28, 9)),  # Sat, still CET
        # dom/dow OR rule
        ("0 8 1 * MON", "Europe/Madrid", utc(2026, 4, 1, 12), utc(2026, 4, 1, 6)),  # Wed the 1st
        ("0 8 1 * MON", "Europe/Madrid", utc(2026, 4, 5, 12), utc(2026, 4, 1, 6)),
        ("0 8 1 * MON", "Europe/Madrid", utc(2026, 4, 7, 12), utc(2026, 4, 6, 6)),  # Mon the 6th
        # now given in another zone: same instant, same answer
        ("0 8 * * *", "Europe/Madrid", datetime(2026, 3, 30, 14, tzinfo=MADRID), utc(2026, 3, 30, 6)),
        # rare expressions
        ("@yearly", "UTC", utc(2026, 6, 1), utc(2026, 1, 1)),
        ("@monthly", "Europe/Madrid", utc(2026, 6, 15), utc(2026, 5, 31, 22)),
        ("0 0 29 2 *", "UTC", utc(2024, 6, 1), utc(2024, 2, 29)),
        ("0 0 29 2 *", "UTC", utc(2026, 6, 1), None),  # more than SEARCH_DAYS ago
        ("59 23 31 12 *", "UTC", utc(2026, 12, 31, 23, 58), utc(2025, 12, 31, 23, 59)),
    ],
)
def test_last_fire(text: str, zone: str, now: datetime, expected: datetime | None) -> None:
    fired = last_fire(CronExpr.parse(text), ZoneInfo(zone), now)
    assert fired == expected
    if fired is not None:
        assert fired.tzinfo is UTC


def test_last_fire_every_minute_and_seconds() -> None:
    expr = CronExpr.parse("* * * * *")
    assert last_fire(expr, MADRID, utc(2026, 3, 30, 12, 0, 59)) == utc(2026, 3, 30, 12, 0)


def test_last_fire_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        last_fire(CronExpr.parse("@daily"), MADRID, datetime(2026, 3, 30, 12))


def test_wall_to_utc_gap_and_overlap() -> None:
    assert wall_to_utc(date(2026, 3, 29), 2, 30, MADRID) == utc(2026, 3, 29, 1)
    assert wall_to_utc(date(2026, 10, 25), 2, 30, MADRID) == utc(2026, 10, 25, 0, 30)
    assert wall_to_utc(date(2026, 7, 1), 2, 30, MADRID) == utc(2026, 7, 1, 0, 30)


def test_daily_schedule_over_a_year_fires_once_a_day_at_8_local() -> None:
    """Across both DST changes, '0 8 * * *' always fires at 08:00 Madrid time, once per day."""
    expr = CronExpr.parse("0 8 * * *")
    seen = set()
    now = utc(2026, 1, 1, 12)
    while now < utc(2027, 1, 1):
        fired = last_fire(expr, MADRID, now)
        assert fired is not None
        local = fired.astimezone(MADRID)
        assert (local.hour, local.minute) == (8, 0)
        seen.add(local.date())
        now += timedelta(hours=6)
    assert len(seen) == 365


def test_last_fire_is_fast() -> None:
    """200 clusters x 3 schedules, with expressions that make the search walk far back, well within a tick."""
    exprs = [CronExpr.parse(text) for text in ("0 0 29 2 *", "0 0 1 1 *", "* * * * *")]
    start = time.perf_counter()
    for _ in range(200):
        for expr in exprs:
            last_fire(expr, MADRID, utc(2026, 12, 31, 0, 0, 30))
    assert time.perf_counter() - start < 2.0
    assert SEARCH_DAYS >= 366


# --- property: agrees with a minute-by-minute search in UTC -------------------------------------------------------

FIELD_VALUES = {
    "minute": st.sampled_from(["*", "0", "*/15", "5,35", "10-20/5", "59"]),
    "hour": st.sampled_from(["*", "0", "8", "*/6", "9-17", "23"]),
    "dom": st.sampled_from(["*", "1", "15", "*/2", "1-31/3", "28-31"]),
    "month": st.sampled_from(["*"]),
    "dow": st.sampled_from(["*", "MON-FRI", "0", "SAT,SUN", "3"]),
}


@settings(max_examples=60, deadline=None)
@given(
    fields=st.tuples(*FIELD_VALUES.values()),
    now=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
)
def test_last_fire_matches_brute_force_in_utc(fields: tuple[str, ...], now: datetime) -> None:
    expr = CronExpr.parse(" ".join(fields))
    fired = last_fire(expr, ZoneInfo("UTC"), now)
    # brute force: walk back minute by minute over 9 days
    minute = now.replace(second=0, microsecond=0)
    expected = None
    for _ in range(9 * 24 * 60):
        if expr.matches(minute):
            expected = minute
            break
        minute -= timedelta(minutes=1)
    if expected is not None:
        assert fired == expected
    else:  # fired earlier than the window (or not within SEARCH_DAYS)
        assert fired is None or fired <= minute
    if fired is not None:
        assert fired <= now and expr.matches(fired)
