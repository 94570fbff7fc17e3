"""The polling schedule and the ``wait_until`` driver, against a fake clock.

The goals (module docstring of ``provisioner.polling``), for an operation lasting ``T`` s, 0.2 s <= T <= 2 h:
(a) first checks within 0.1-0.3 s, then growing intervals; (b) lag <= max(1 s, 10 % of T); (c) requests <=
30 + T/15, except in the stated windows, and there by less than 1.22 requests. The default checks at 0.1 s, at a
random 0.2-0.3 s, then greedily as late as (b) allows.

Worst cases are found exhaustively, not sampled: between two checks at ``a < b`` every ``T`` in ``(a, b]`` is
noticed by the check at ``b``, with the same number of requests, so both the lag (``b - T``) and the budget
(growing with ``T``) are tightest for ``T`` just after ``a``. Over the draws of the second check, every check time
grows with the time of the second check, so the extremes are reached at the ends of 0.2-0.3 s, which the draws
include.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from fractions import Fraction
from itertools import cycle, pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.ansible.ssh import SSH_SCHEDULE
from provisioner.aws.lambda_ import WAIT_SCHEDULE
from provisioner.errors import OperationTimeout
from provisioner.polling import DEFAULT_SCHEDULE, PollSchedule, wait_until
from provisioner.workflow.runs import TRACE_SCHEDULE

RAND_ALMOST_ONE = math.nextafter(1.0, 0.0)  # the largest draw below 1: the earliest checks
SECOND_DRAWS = [i / 200 for i in range(200)] + [RAND_ALMOST_ONE]  # second checks from 0.3 s down to 0.2 s
TABLE = [0.2, 1, 10, 30, 60, 300, 600, 1800, 3600]  # bench figure 6
TABLE_REQUESTS = [2, 3, 12, 24, 31, 48, 58, 98, 158]  # for every draw
TABLE_WORST_LAG = [0.1, 0.3, 0.3, 2.33, 2.99, 18.40, 18.40, 18.40, 18.40]
FIRST = 0.1  # the default's first check, s into the wait: IM's own work after it answers a create's POST
HORIZON = 2 * 3600.0
EPS = 1e-9
ONLY_FIRST = dataclasses.replace(DEFAULT_SCHEDULE, second=None)  # the comparison: no second early check

# Where (c) cannot hold, as the module docstring states them: (from, to) of T. A stated start is the true one rounded
# down to 0.01 s, a stated end the true one rounded up, so the stated windows hold the true ones, to within 0.01 s.
WINDOWS = [(100.46, 105.0), (110.51, 120.0), (121.56, 195.0), (195.78, 210.0), (215.36, 225.0), (236.89, 240.0)]
WINDOWS_OVER_ONE = [(133.72, 135.0), (147.09, 150.0), (161.80, 165.0), (177.98, 180.0)]  # more than 1 request over
WINDOWS_SECOND_AT_03 = [
    (101.45, 105.0),
    (111.59, 120.0),
    (122.75, 135.0),
    (135.03, 195.0),
    (197.70, 210.0),
    (217.47, 225.0),
    (239.21, 240.0),
]
WINDOWS_ONLY_FIRST = [(132.41, 135.0), (145.65, 150.0), (160.21, 165.0), (176.23, 180.0), (193.86, 195.0)]
MAX_EXCESS, MAX_EXCESS_SECOND_AT_03, MAX_EXCESS_ONLY_FIRST = 1.22, 1.11, 0.32
WORST = (161.80, 42, 40.79)  # T just over 161.80 s, second check at 0.2 s: 42 requests, budget 40.79 (+1.2131)
WORST_ONLY_FIRST = (160.21, 41, 40.68)  # T just over 160.21 s: 41 requests, budget 40.68 (+0.3189)
WINDOWS_LENGTH, WINDOWS_ONLY_FIRST_LENGTH = 114.4, 16.6


def request_budget(duration: float) -> float:
    return 30 + duration / 15


def lag_goal(duration: float) -> float:
    return max(1.0, 0.1 * duration)


def in_window(duration: float, windows: list[tuple[float, float]] = WINDOWS) -> bool:
    return any(lo < duration < hi for lo, hi in windows)


def within_goal_c(duration: float, requests: int) -> bool:
    """(c); or, inside the windows, less than MAX_EXCESS over it, and more than one over only where stated."""
    excess = requests - request_budget(duration)
    if excess <= 0:
        return True
    return in_window(duration) and excess < MAX_EXCESS and (excess <= 1 or in_window(duration, WINDOWS_OVER_ONE))


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.start = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds

    @property
    def elapsed(self) -> float:
        return self.now - self.start


class Deployment:
    """An operation that finishes ``duration`` s after the wait starts; counts the checks.

    Done once the clock reads ``start + duration``: the same sum ``wait_until`` sleeps to, so a check scheduled
    exactly at ``duration`` notices it (elapsed times, differences of large numbers, are rounded)."""

    def __init__(self, clock: FakeClock, duration: float) -> None:
        self.clock = clock
        self.done_at = clock.start + duration
        self.checks: list[float] = []

    def __call__(self) -> str | None:
        self.checks.append(self.clock.elapsed)
        return "configured" if self.clock.now >= self.done_at else None


def draws(values: list[float]) -> Callable[[], float]:
    it: Iterator[float] = cycle(values)
    return lambda: next(it)


def simulate(duration: float, rands: list[float], schedule: PollSchedule = DEFAULT_SCHEDULE) -> tuple[int, float]:
    """Run ``wait_until`` on a deployment lasting ``duration`` s; return (requests, lag)."""
    clock = FakeClock()
    deployment = Deployment(clock, duration)
    result = wait_until(
        deployment,
        timeout=duration + 3600,
        clock=clock,
        sleep=clock.sleep,
        rand=draws(rands),
        schedule=schedule,
    )
    assert result == "configured"
    # Lag against the very sum the deployment compares with (start + duration), so it is never below 0 by rounding.
    return len(deployment.checks), clock.now - deployment.done_at


def check_times(horizon: float, rands: list[float], schedule: PollSchedule = DEFAULT_SCHEDULE) -> list[float]:
    """The elapsed times of every check of a wait that never succeeds, up to ``horizon``."""
    clock = FakeClock()
    deployment = Deployment(clock, math.inf)
    with pytest.raises(OperationTimeout):
        wait_until(deployment, timeout=horizon, clock=clock, sleep=clock.sleep, rand=draws(rands), schedule=schedule)
    return deployment.checks


def greedy_optimum(first: float, horizon: float) -> list[float]:
    """The latest checks that (b) allows after a check at ``first``: each one ``max(1, 10 %)`` of the elapsed time
    after the one before (a deployment ending just after a check is noticed by the next one)."""
    checks = [first]
    while checks[-1] < horizon:
        checks.append(checks[-1] + lag_goal(checks[-1]))
    return checks


def requests_for(checks: list[float], duration: float) -> int:
    """The checks before ``duration``, and the one noticing it."""
    return 1 + sum(1 for c in checks if c < duration)


def over_budget(checks: list[float]) -> list[tuple[float, float, float]]:
    """(from, to, excess) of every range of T for which these checks exceed the request budget.

    A T in ``(checks[i-1], checks[i]]`` takes ``i + 1`` requests; the budget reaches that at ``T = 15 (i + 1 - 30)``.
    """
    found = []
    for i in range(1, len(checks)):
        excess = i + 1 - request_budget(checks[i - 1])
        if excess > 0:
            found.append((checks[i - 1], min(checks[i], 15 * (i + 1 - 30)), excess))
    return found


def merged(ranges: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def assert_as_stated(found: list[tuple[float, float]], stated: list[tuple[float, float]]) -> None:
    """Each stated start is the true one rounded down to 0.01, each stated end the true one rounded up."""
    assert len(found) == len(stated), (found, stated)
    for (lo, hi), (s_lo, s_hi) in zip(found, stated, strict=True):
        assert s_lo <= lo < s_lo + 0.01, (lo, s_lo)
        assert s_hi - 0.01 < hi <= s_hi + EPS, (hi, s_hi)


# --- the schedule itself ---------------------------------------------------------------------------------------------


def test_first_check_at_a_tenth_then_one_within_two_and_three_tenths_of_a_second() -> None:
    assert {DEFAULT_SCHEDULE.first_check(r) for r in SECOND_DRAWS} == {FIRST}  # no randomness
    assert 0.1 <= FIRST < 0.2  # (a): within 0.1-0.3 s, and before the second check
    seconds = [DEFAULT_SCHEDULE.second_check(r) for r in SECOND_DRAWS]
    assert seconds[0] == 0.3 and seconds[-1] == 0.2  # both ends reached exactly
    assert DEFAULT_SCHEDULE.second_check(1.0) == 0.2
    assert all(s is not None and 0.2 <= s <= 0.3 for s in seconds)
    assert seconds == sorted(seconds, reverse=True)  # a draw towards 1 checks earlier, like a shortened interval
    assert DEFAULT_SCHEDULE.second_check(0.5) == pytest.approx(0.25)


def test_intervals_one_second_then_ten_percent_then_capped() -> None:
    s = DEFAULT_SCHEDULE
    assert [s.next_interval(t, 0.7) for t in (0.1, 0.3, 5.0, 10.0)] == [1.0] * 4
    assert s.next_interval(40.0, 0.0) == pytest.approx(4.0)
    assert s.next_interval(299.0, RAND_ALMOST_ONE) == pytest.approx(29.9)
    assert s.next_interval(10_000.0, RAND_ALMOST_ONE) == s.cap == 30.0
    for elapsed in (0.0, 1.0, 10.0, 100.0, 1000.0):  # no jitter after the second check: nothing shortened
        assert s.next_interval(elapsed, RAND_ALMOST_ONE) == s.next_interval(elapsed, 0.0)


def test_intervals_grow_from_the_start_on() -> None:
    """Every interval from the start of the wait on is at least the one before: 0.1 s to the first check, 0.1-0.2 s
    to the second, then 1 s, then growing."""
    for draw in SECOND_DRAWS:
        checks = check_times(HORIZON, [draw])
        gaps = [b - a for a, b in pairwise([0.0, *checks[:-1]])]  # the last check is the deadline's
        assert gaps[0] == pytest.approx(0.1)
        assert 0.1 - EPS <= gaps[1] <= 0.2 + EPS
        assert gaps[2] == pytest.approx(1.0)
        assert all(b >= a - EPS for a, b in pairwise(gaps)), draw
    earliest = check_times(HORIZON, [RAND_ALMOST_ONE])  # the second check at 0.2 s: 0.1 s after the first
    assert earliest[1] - earliest[0] == pytest.approx(earliest[0]) == pytest.approx(0.1)
    latest = check_times(HORIZON, [0.0])  # at 0.3 s: 0.2 s after it
    assert latest[1] - latest[0] == pytest.approx(0.2)


def test_every_check_time_grows_with_the_second_checks_time() -> None:
    """The premise of the exhaustive search: a later second check makes every later check later."""
    runs = [list(DEFAULT_SCHEDULE.check_times(HORIZON, draws([draw]))) for draw in SECOND_DRAWS]
    for later, earlier in pairwise(runs):  # draws grow: checks get earlier
        assert all(e <= la for e, la in zip(earlier, later, strict=False))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"growth": -0.1},
        {"cap": 0.5},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"first_min": -0.1},
        {"first_min": 0.5, "first_max": 0.3},
        {"first_max": math.inf},
        {"second": (0.5, 0.4)},
        {"second": (0.2, 0.4)},  # not after the default first check's latest time, 0.3 s
        {"first_min": 0.1, "first_max": 0.1, "second": (0.1, 0.3)},
        {"second": (0.4, math.inf)},
    ],
)
def test_schedule_rejects_bad_parameters(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PollSchedule(**kwargs)  # type: ignore[arg-type]


def test_rand_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        DEFAULT_SCHEDULE.next_interval(1.0, 1.5)
    with pytest.raises(ValueError):
        DEFAULT_SCHEDULE.first_check(-0.1)
    with pytest.raises(ValueError):
        DEFAULT_SCHEDULE.second_check(1.5)
    with pytest.raises(ValueError):
        ONLY_FIRST.second_check(-0.1)


def test_callers_schedules_keep_their_keywords_and_their_jitter() -> None:
    """lambda_/ssh/workflow build schedules with initial=, growth=, cap=, jitter=: the other fields default to one
    first check at 0.1-0.3 s and no second early check, as before."""
    ssh = PollSchedule(initial=1.0, growth=0.25, cap=10.0, jitter=0.1)
    assert ssh == SSH_SCHEDULE
    assert ssh.next_interval(8.0, 0.0) == 2.0
    assert ssh.next_interval(8.0, RAND_ALMOST_ONE) == pytest.approx(1.8)  # their jitter still shortens
    assert ssh.first_check(0.0) == 0.3 and ssh.first_check(1.0) == 0.1 and 0.1 <= ssh.first_check(0.5) <= 0.3
    for schedule in (SSH_SCHEDULE, WAIT_SCHEDULE, TRACE_SCHEDULE, PollSchedule()):
        assert schedule.second is None and schedule.second_check(0.5) is None
        assert (schedule.first_min, schedule.first_max) == (0.1, 0.3)
    # The single-first-check schedules draw as before: one draw for the first check, one per interval.
    assert list(SSH_SCHEDULE.check_times(3.0, draws([0.0, 0.0, RAND_ALMOST_ONE]))) == pytest.approx(
        [0.3, 1.3, 2.2, 3.2]
    )
    at_once = PollSchedule(first_min=0.0, first_max=0.0)
    assert at_once.first_check(RAND_ALMOST_ONE) == at_once.first_check(0.0) == 0.0


def test_the_default_and_the_lifecycles_replacements_keep_both_early_checks() -> None:
    assert PollSchedule(first_min=0.1, first_max=0.1, second=(0.2, 0.3)) == DEFAULT_SCHEDULE
    assert (DEFAULT_SCHEDULE.initial, DEFAULT_SCHEDULE.growth, DEFAULT_SCHEDULE.cap) == (1.0, 0.1, 30.0)
    assert DEFAULT_SCHEDULE.jitter == 0.0
    fast = dataclasses.replace(DEFAULT_SCHEDULE, initial=0.2, cap=30.0)  # PROVISION_POLL_INITIAL=0.2
    assert (fast.first_min, fast.first_max, fast.second) == (0.1, 0.1, (0.2, 0.3))
    assert list(fast.check_times(0.75, draws([0.0]))) == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    assert list(ONLY_FIRST.check_times(3.0, draws([0.0]))) == pytest.approx([0.1, 1.1, 2.1, 3.1])


# --- (a) + (b) force the checks: the greedy optimum, and why (c) cannot hold everywhere -----------------------------


def test_ours_is_a_tenth_then_the_greedy_optimum_from_the_second_check_until_the_cap() -> None:
    """Every check after the second as late as (b) allows, for every draw; from 300 s on, 30 s apart."""
    for draw in (0.0, 0.25, 0.5, 0.75, RAND_ALMOST_ONE):
        ours = check_times(HORIZON, [draw])
        assert ours[0] == pytest.approx(0.1)
        optimum = greedy_optimum(ours[1], 300.0)
        assert ours[1 : len(optimum)] == pytest.approx(optimum[:-1], rel=1e-12, abs=1e-9)
        after_cap = [b - a for a, b in pairwise(ours[len(optimum) - 1 : -1])]
        assert after_cap[1:] == pytest.approx([30.0] * (len(after_cap) - 1))
        pure = list(DEFAULT_SCHEDULE.check_times(HORIZON, draws([draw])))  # the same, without the driver
        assert pure[:-1] == pytest.approx(ours[:-1], abs=1e-9)  # (the driver's last check is at the deadline)


@settings(max_examples=200, deadline=None)
@given(
    first=st.floats(min_value=0.0, max_value=0.1),
    draw=st.floats(min_value=0.0, max_value=1.0),
    second_at=st.floats(min_value=0.0, max_value=1.0),
    fractions=st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=60, max_size=60),
)
def test_any_schedule_meeting_b_with_our_early_checks_checks_no_later_than_ours(
    first: float, draw: float, second_at: float, fractions: list[float]
) -> None:
    """Any schedule checking by 0.1 s and by our second check's time ``s``, then within (b)'s limit: its k-th
    check is never later than ours, because t + max(1, 0.1 t) grows with t. So no such schedule makes fewer
    requests."""
    s = DEFAULT_SCHEDULE.second_check(draw)
    assert s is not None
    checks = [first, first + second_at * (s - first)]
    for f in fractions:
        checks.append(checks[-1] + f * lag_goal(checks[-1]))
    ours = list(DEFAULT_SCHEDULE.check_times(checks[-1], lambda: draw))
    assert all(c <= o + EPS for c, o in zip(checks, ours, strict=False))


@settings(max_examples=200, deadline=None)
@given(
    first=st.floats(min_value=0.0, max_value=0.3),
    fractions=st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=60, max_size=60),
)
def test_any_schedule_meeting_a_and_b_checks_no_later_than_the_optimum(first: float, fractions: list[float]) -> None:
    """Any intervals within (b)'s limit after any first check <= 0.3 s: the k-th check is never later than the
    greedy optimum's from 0.3 s, because t + max(1, 0.1 t) grows with t."""
    checks = [first]
    for f in fractions:
        checks.append(checks[-1] + f * lag_goal(checks[-1]))
    optimum = greedy_optimum(0.3, HORIZON)
    assert all(c <= o + EPS for c, o in zip(checks, optimum, strict=False))


def test_no_schedule_meeting_a_and_b_keeps_the_budget_just_before_165_s() -> None:
    """The optimum from the latest first check makes its 40th check at 163.39 s: every schedule meeting (a) and (b)
    has made its first 40 checks by then, so a deployment lasting 163.39 < T < 165 s takes 41 requests."""
    optimum = greedy_optimum(0.3, HORIZON)
    assert optimum[39] == pytest.approx(163.39, abs=0.005)
    for duration in (optimum[39] + 1e-6, (optimum[39] + 165) / 2, 165 - 1e-6):
        assert requests_for(optimum, duration) == 41 > request_budget(duration)
    assert requests_for(optimum, 165.0) <= request_budget(165.0)


def test_a_first_check_after_0_41_s_would_keep_the_budget_everywhere() -> None:
    """The module docstring's aside: (b) and (c) both hold for every T once the single first check is late enough."""
    assert not over_budget(greedy_optimum(0.41, HORIZON))
    assert over_budget(greedy_optimum(0.40, HORIZON))


def test_the_second_check_costs_one_request_and_saves_up_to_a_second_of_lag() -> None:
    """Against the greedy optimum from the same second check: exactly one request more for every 0.1 < T <= 300 s
    (from 300 s on our cap makes more requests than that optimum, and keeps the lag at 30 s). Against the
    schedule with only the 0.1 s check: never fewer requests, at most one more; and a deployment finishing between
    0.1 s and s is noticed at s instead of at 1.1 s."""
    only_first = list(ONLY_FIRST.check_times(HORIZON, draws([0.0])))
    for draw in (0.0, 0.5, RAND_ALMOST_ONE):
        ours = list(DEFAULT_SCHEDULE.check_times(HORIZON, draws([draw])))
        s = ours[1]
        optimum = greedy_optimum(s, HORIZON)
        critical = sorted({t for c in ours + only_first + optimum for t in (c, c + 1e-7) if FIRST < t <= HORIZON})
        differences = set()
        for duration in critical:
            if duration <= 300:  # until the cap: ours is 0.1 s, then that optimum
                assert requests_for(ours, duration) == requests_for(optimum, duration) + 1, duration
            differences.add(requests_for(ours, duration) - requests_for(only_first, duration))
        assert differences == {0, 1}
        for duration in (0.1 + 1e-6, (0.1 + s) / 2, s):
            assert simulate(duration, [draw])[1] == pytest.approx(s - duration, abs=1e-9)
            assert simulate(duration, [draw], ONLY_FIRST)[1] == pytest.approx(1.1 - duration, abs=1e-9)
        assert simulate(0.1 + 1e-6, [draw], ONLY_FIRST)[1] == pytest.approx(1.0, abs=1e-5)  # "up to 1 s" of lag


# --- (b) and (c) for every T and every draw ---------------------------------------------------------------------------


def test_lag_within_goal_for_every_duration_and_draw() -> None:
    for draw in SECOND_DRAWS:
        checks = check_times(HORIZON + 60, [draw])
        assert checks[0] == pytest.approx(0.1)  # T up to the first check: lag <= 0.1 s
        for duration in (1e-6, 0.05, 0.1):
            requests, lag = simulate(duration, [draw])
            assert requests == 1 and lag == pytest.approx(0.1 - duration, abs=1e-9)
        for duration in (0.1 + 1e-6, 0.15, 0.2 - 1e-6):  # T in 0.1-0.2 s, below the goals' range: lag < 0.2 s
            requests, lag = simulate(duration, [draw])
            assert requests == 2 and lag == pytest.approx(checks[1] - duration, abs=1e-9) and lag < 0.2
        for a, b in pairwise(checks[:-1]):  # T just after a is noticed at b
            assert b - a <= lag_goal(a) + EPS, (draw, a, b)
            assert b - a <= DEFAULT_SCHEDULE.max_lag(a) + EPS


def test_requests_within_budget_outside_the_stated_windows() -> None:
    worst = (0.0, 0.0, 0.0)
    ranges: list[tuple[float, float]] = []
    over_one: list[tuple[float, float]] = []
    for draw in SECOND_DRAWS:
        checks = check_times(HORIZON + 60, [draw])[:-1]
        for lo, hi, excess in over_budget(checks):
            ranges.append((lo, hi))
            worst = max(worst, (excess, lo, draw))
            if excess > 1:  # more than one over: for T below the budget's next whole number, 15 (excess - 1) s on
                over_one.append((lo, min(hi, lo + 15 * (excess - 1))))
    assert_as_stated(merged(ranges), WINDOWS)  # the union over the draws, both ends of 0.2-0.3 s included
    assert_as_stated(merged(over_one), WINDOWS_OVER_ONE)
    excess, at, draw = worst
    assert 1.2130 < excess <= 1.2131 < MAX_EXCESS  # "at most 1.2131"
    assert draw == RAND_ALMOST_ONE and WORST[0] <= at < WORST[0] + 0.01
    requests, _ = simulate(at + 1e-6, [draw])  # the driver agrees
    assert requests == WORST[1] and request_budget(at) == pytest.approx(WORST[2], abs=0.005)
    assert sum(hi - lo for lo, hi in merged(ranges)) == pytest.approx(WINDOWS_LENGTH, abs=0.05)


def test_the_windows_in_exact_arithmetic() -> None:
    """The same windows with rationals: every window starts at a check made with the second check at 0.2 s and ends
    at the budget's next whole number or at the next check made with the second check at 0.3 s."""

    def ours(s: Fraction, first: Fraction = Fraction(1, 10)) -> list[Fraction]:
        checks = [first, s]
        while checks[-1] < 300:
            checks.append(checks[-1] + max(Fraction(1), checks[-1] / 10))
        return checks

    earliest, latest = ours(Fraction(2, 10)), ours(Fraction(3, 10))
    ranges, over_one, excesses = [], [], []
    for i in range(1, len(earliest)):
        if earliest[i - 1] < 15 * (i + 1 - 30):
            ranges.append((float(earliest[i - 1]), float(min(latest[i], 15 * (i + 1 - 30)))))
            excesses.append(float(i + 1 - 30 - earliest[i - 1] / 15))
        if earliest[i - 1] < 15 * (i + 1 - 31):
            over_one.append((float(earliest[i - 1]), float(min(latest[i], 15 * (i + 1 - 31)))))
    assert_as_stated(merged(ranges), WINDOWS)
    assert_as_stated(merged(over_one), WINDOWS_OVER_ONE)
    assert 1.2130 < max(excesses) <= 1.2131
    for name, checks in (("0.2", earliest), ("0.3", latest)):  # every piece is met by both ends: the union is whole
        starts = [float(checks[i - 1]) for i in range(1, len(checks)) if checks[i - 1] < 15 * (i + 1 - 30)]
        assert len(starts) == len(excesses), name
    # The first check's time does not matter (any time before the second).
    for first in (Fraction(0), Fraction(5, 100), Fraction(15, 100), Fraction(19, 100)):
        for s in (Fraction(2, 10), Fraction(3, 10)):
            assert ours(s, first)[1:] == ours(s)[1:]


def test_windows_with_the_latest_second_check() -> None:
    found = over_budget(check_times(HORIZON + 60, [0.0])[:-1])
    assert_as_stated(merged([(lo, hi) for lo, hi, _ in found]), WINDOWS_SECOND_AT_03)
    assert 1.10 < max(excess for _, _, excess in found) <= MAX_EXCESS_SECOND_AT_03


def test_windows_with_only_the_first_check_for_comparison() -> None:
    checks = check_times(HORIZON + 60, [0.5], ONLY_FIRST)[:-1]
    assert checks[:3] == pytest.approx([0.1, 1.1, 2.1])
    found = over_budget(checks)
    windows = merged([(lo, hi) for lo, hi, _ in found])
    assert_as_stated(windows, WINDOWS_ONLY_FIRST)
    excess, at, _ = max((excess, lo, hi) for lo, hi, excess in found)
    assert 0.3188 < excess <= 0.3189 < MAX_EXCESS_ONLY_FIRST  # "at most 0.3189"
    assert WORST_ONLY_FIRST[0] <= at < WORST_ONLY_FIRST[0] + 0.01
    requests, _ = simulate(at + 1e-6, [0.5], ONLY_FIRST)  # the driver agrees
    assert requests == WORST_ONLY_FIRST[1] and request_budget(at) == pytest.approx(WORST_ONLY_FIRST[2], abs=0.005)
    assert sum(hi - lo for lo, hi in windows) == pytest.approx(WINDOWS_ONLY_FIRST_LENGTH, abs=0.05)

    def exact(first: Fraction) -> list[Fraction]:  # the same in rationals
        checks = [first]
        while checks[-1] < 300:
            checks.append(checks[-1] + max(Fraction(1), checks[-1] / 10))
        return checks

    only_first = exact(Fraction(1, 10))
    ranges, excesses = [], []
    for i in range(1, len(only_first)):
        if only_first[i - 1] < 15 * (i + 1 - 30):
            ranges.append((float(only_first[i - 1]), float(min(only_first[i], 15 * (i + 1 - 30)))))
            excesses.append(float(i + 1 - 30 - only_first[i - 1] / 15))
    assert_as_stated(merged(ranges), WINDOWS_ONLY_FIRST)
    assert 0.3188 < max(excesses) <= 0.3189


def test_the_driver_meets_the_worst_cases_the_analysis_names() -> None:
    """End to end: a deployment ending just after each check, through wait_until, for a few draws."""
    for draw in (0.0, 0.5, RAND_ALMOST_ONE):
        checks = check_times(HORIZON + 60, [draw])[:-1]
        for i, at in enumerate(checks[:-1]):
            duration = at + 1e-6
            requests, lag = simulate(duration, [draw])
            assert requests == i + 2
            assert lag == pytest.approx(checks[i + 1] - duration, abs=1e-6)
            assert lag <= lag_goal(duration)
            assert within_goal_c(duration, requests)


@pytest.mark.parametrize(
    ("duration", "requests", "worst_lag"), list(zip(TABLE, TABLE_REQUESTS, TABLE_WORST_LAG, strict=True))
)
def test_bench_table_durations_meet_every_goal(duration: float, requests: int, worst_lag: float) -> None:
    """The same count for every draw: the latest second check (rand=0) makes the fewest, the bound (the earliest
    draws) the most, and they agree."""
    assert not in_window(duration)
    results = [simulate(duration, [draw]) for draw in SECOND_DRAWS]
    assert {r for r, _ in results} == {requests} == {DEFAULT_SCHEDULE.max_requests(duration)}
    assert simulate(duration, [0.0])[0] == requests
    assert requests <= request_budget(duration)
    assert max(lag for _, lag in results) == pytest.approx(worst_lag, abs=0.005)
    assert max(lag for _, lag in results) <= lag_goal(duration)


@settings(max_examples=300, deadline=None)
@given(
    duration=st.floats(min_value=0.2, max_value=HORIZON, allow_nan=False),
    rands=st.lists(st.floats(min_value=0.0, max_value=RAND_ALMOST_ONE), min_size=1, max_size=50),
)
def test_goals_hold_for_any_draws(duration: float, rands: list[float]) -> None:
    requests, lag = simulate(duration, rands)
    assert 0 <= lag <= lag_goal(duration) + EPS
    assert lag <= DEFAULT_SCHEDULE.max_lag(duration) + EPS
    assert requests <= DEFAULT_SCHEDULE.max_requests(duration)
    assert within_goal_c(duration, requests)


# --- the bounds for any schedule (callers pass their own) ----------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        DEFAULT_SCHEDULE,
        WAIT_SCHEDULE,
        SSH_SCHEDULE,
        TRACE_SCHEDULE,
        PollSchedule(first_min=0.0, first_max=0.0),
        ONLY_FIRST,
        dataclasses.replace(DEFAULT_SCHEDULE, initial=0.2),
        PollSchedule(initial=0.5, jitter=0.2, first_min=0.0, first_max=0.0, second=(0.2, 0.6)),
    ],
    ids=["default", "lambda", "ssh", "trace", "at-once", "only-first", "fast-lifecycle", "jittered-second"],
)
def test_max_lag_and_max_requests_bound_every_draw(schedule: PollSchedule) -> None:
    for draw in (0.0, 0.5, RAND_ALMOST_ONE):
        checks = check_times(3600.0, [draw], schedule)[:-1]
        assert checks[0] <= schedule.max_lag(0.0) + EPS
        for a, b in pairwise(checks):
            assert b - a <= schedule.max_lag(a) + EPS
        for duration in (0.05, 0.15, 0.25, 0.5, 3.0, 42.0, 700.0, 3000.0):
            requests, lag = simulate(duration, [draw], schedule)
            assert requests <= schedule.max_requests(duration)
            assert lag <= schedule.max_lag(duration) + EPS
    for duration in (0.5, 42.0, 700.0):  # and the bound is reached: by the earliest draws
        assert simulate(duration, [RAND_ALMOST_ONE], schedule)[0] == schedule.max_requests(duration)


# --- the driver ------------------------------------------------------------------------------------------------------


def test_first_check_at_a_tenth_of_a_second_not_at_once() -> None:
    """Right after a create's POST a check at once, or well before IM's own work (about 0.1 s) is done, is a wasted
    request: the default waits 0.1 s, whatever the draw."""
    for draw in (0.0, RAND_ALMOST_ONE):
        clock = FakeClock()
        assert wait_until(lambda: 0, timeout=10, clock=clock, sleep=clock.sleep, rand=lambda d=draw: d) == 0
        assert clock.sleeps == pytest.approx([0.1])


@pytest.mark.parametrize(("draw", "second"), [(0.0, 0.3), (0.5, 0.25), (RAND_ALMOST_ONE, 0.2)])
def test_second_check_within_two_and_three_tenths_of_a_second(draw: float, second: float) -> None:
    clock = FakeClock()
    deployment = Deployment(clock, 0.18)  # just missed by the first check
    assert wait_until(deployment, timeout=10, clock=clock, sleep=clock.sleep, rand=lambda: draw) == "configured"
    assert deployment.checks == pytest.approx([0.1, second])
    assert clock.sleeps == pytest.approx([0.1, second - 0.1])


def test_an_at_once_schedule_returns_without_sleeping() -> None:
    clock = FakeClock()
    at_once = PollSchedule(first_min=0.0, first_max=0.0)
    assert wait_until(lambda: 0, timeout=10, clock=clock, sleep=clock.sleep, rand=lambda: 0.5, schedule=at_once) == 0
    assert clock.sleeps == []


def test_timeout_raises_with_a_final_check_at_the_deadline_and_no_sleep_past_it() -> None:
    clock = FakeClock()
    deployment = Deployment(clock, math.inf)
    with pytest.raises(OperationTimeout) as info:
        wait_until(deployment, timeout=100.0, clock=clock, sleep=clock.sleep, rand=lambda: 0.3, what="cluster 'x'")
    assert clock.elapsed == pytest.approx(100.0)
    assert deployment.checks[:3] == pytest.approx([0.1, 0.27, 1.27])
    assert deployment.checks[-1] == pytest.approx(100.0)
    assert all(at <= 100.0 + 1e-9 for at in deployment.checks)
    assert sum(clock.sleeps) == pytest.approx(100.0)
    assert info.value.exit_code == 4
    assert "cluster 'x'" in str(info.value)


def test_timeout_before_the_first_check_checks_at_the_deadline() -> None:
    clock = FakeClock()
    deployment = Deployment(clock, math.inf)
    with pytest.raises(OperationTimeout):
        wait_until(deployment, timeout=0.05, clock=clock, sleep=clock.sleep, rand=lambda: 0.0)
    assert deployment.checks == pytest.approx([0.05])


def test_timeout_before_the_second_check_checks_at_the_deadline() -> None:
    clock = FakeClock()
    deployment = Deployment(clock, math.inf)
    with pytest.raises(OperationTimeout):
        wait_until(deployment, timeout=0.18, clock=clock, sleep=clock.sleep, rand=lambda: 0.0)
    assert deployment.checks == pytest.approx([0.1, 0.18])


def test_success_at_the_final_check_is_returned() -> None:
    clock = FakeClock()
    deployment = Deployment(clock, 100.0)
    assert wait_until(deployment, timeout=100.0, clock=clock, sleep=clock.sleep, rand=lambda: 0.0) == "configured"
    assert clock.elapsed == pytest.approx(100.0)


@pytest.mark.parametrize("timeout", [0.0, -5.0])
def test_zero_timeout_checks_once_at_once(timeout: float) -> None:
    clock = FakeClock()
    deployment = Deployment(clock, math.inf)
    with pytest.raises(OperationTimeout):
        wait_until(deployment, timeout=timeout, clock=clock, sleep=clock.sleep, rand=lambda: 0.0)
    assert deployment.checks == [0.0]
    assert clock.sleeps == []


def test_time_spent_checking_counts_towards_the_interval() -> None:
    clock = FakeClock()
    starts: list[float] = []

    def slow_check() -> None:
        starts.append(clock.elapsed)
        clock.now += 0.4  # each request takes 0.4 s

    with pytest.raises(OperationTimeout):
        wait_until(slow_check, timeout=5.0, clock=clock, sleep=clock.sleep, rand=lambda: 0.0)
    # The second check was due 0.3 s into the wait, when the first was still running: it follows it at once.
    assert starts[:2] == pytest.approx([0.1, 0.5])
    gaps = [b - a for a, b in pairwise(starts[1:])]
    assert gaps[:4] == pytest.approx([1.0] * 4)  # start-to-start, not 1.4 s


def test_slow_check_does_not_sleep_after_the_first() -> None:
    clock = FakeClock()

    def very_slow_check() -> None:
        clock.now += 3.0

    with pytest.raises(OperationTimeout):
        wait_until(very_slow_check, timeout=10.0, clock=clock, sleep=clock.sleep, rand=lambda: 0.0)
    assert clock.sleeps == pytest.approx([0.1])  # only the wait for the first check


def test_callbacks_get_elapsed_and_sleep_lengths() -> None:
    clock = FakeClock()
    ticks: list[float] = []
    planned: list[float] = []

    def refresh(seconds: float) -> None:
        planned.append(seconds)
        clock.now += 0.05  # refreshing credentials takes time: the sleep is shortened to keep the schedule

    deployment = Deployment(clock, 3.0)
    wait_until(
        deployment,
        timeout=60,
        clock=clock,
        sleep=clock.sleep,
        rand=lambda: 0.0,
        on_tick=ticks.append,
        before_sleep=refresh,
    )
    assert ticks == pytest.approx([0.1, 0.3, 1.3, 2.3])
    assert planned == pytest.approx([0.1, 0.2, 1.0, 1.0, 1.0])
    assert clock.sleeps == pytest.approx([0.05, 0.15, 0.95, 0.95, 0.95])
    assert deployment.checks == pytest.approx([0.1, 0.3, 1.3, 2.3, 3.3])


def test_exceptions_from_check_propagate() -> None:
    clock = FakeClock()

    def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        wait_until(broken, timeout=10, clock=clock, sleep=clock.sleep, rand=lambda: 0.0)
