"""The polling schedule and the ``wait_until`` driver, against a fake clock.

The goals (module docstring of ``provisioner.polling``), for an operation lasting ``T`` s, 0.2 s <= T <= 2 h:
(a) first check within 0.1-0.3 s, then growing intervals; (b) lag <= max(1 s, 10 % of T); (c) requests <=
30 + T/15, except in the windows where no schedule meeting (a) and (b) can, and there by less than one request.

Worst cases are found exhaustively, not sampled: between two checks at ``a < b`` every ``T`` in ``(a, b]`` is
noticed by the check at ``b``, with the same number of requests, so both the lag (``b - T``) and the budget
(growing with ``T``) are tightest for ``T`` just after ``a``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
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
FIRST_DRAWS = [i / 200 for i in range(200)] + [RAND_ALMOST_ONE]  # first checks from 0.3 s down to 0.1 s
TABLE = [0.2, 1, 10, 30, 60, 300, 600, 1800, 3600]  # bench figure 6
HORIZON = 2 * 3600.0
EPS = 1e-9

# Where (c) cannot hold, as the module docstring states them: (from, to) of T, over every first check in 0.1-0.3 s.
WINDOWS = [(132.41, 135.0), (145.65, 150.0), (160.21, 165.0), (176.23, 180.0), (193.86, 195.0)]
WINDOWS_FIRST_AT_03 = [(148.53, 150.0), (163.38, 165.0), (179.72, 180.0)]
MAX_EXCESS, MAX_EXCESS_FIRST_AT_03 = 0.32, 0.11


def request_budget(duration: float) -> float:
    return 30 + duration / 15


def lag_goal(duration: float) -> float:
    return max(1.0, 0.1 * duration)


def in_window(duration: float, windows: list[tuple[float, float]] = WINDOWS) -> bool:
    return any(lo < duration < hi for lo, hi in windows)


def within_goal_c(duration: float, requests: int) -> bool:
    """(c), or less than one request over it inside the windows."""
    budget = request_budget(duration)
    return requests <= budget or (in_window(duration) and requests < budget + 1)


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
    """An operation that finishes ``duration`` s after the wait starts; counts the checks."""

    def __init__(self, clock: FakeClock, duration: float) -> None:
        self.clock = clock
        self.duration = duration
        self.checks: list[float] = []

    def __call__(self) -> str | None:
        self.checks.append(self.clock.elapsed)
        return "configured" if self.clock.elapsed >= self.duration else None


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
    return len(deployment.checks), clock.elapsed - duration


def check_times(horizon: float, rands: list[float], schedule: PollSchedule = DEFAULT_SCHEDULE) -> list[float]:
    """The elapsed times of every check of a wait that never succeeds, up to ``horizon``."""
    clock = FakeClock()
    deployment = Deployment(clock, math.inf)
    with pytest.raises(OperationTimeout):
        wait_until(deployment, timeout=horizon, clock=clock, sleep=clock.sleep, rand=draws(rands), schedule=schedule)
    return deployment.checks


def greedy_optimum(first: float, horizon: float) -> list[float]:
    """The latest checks that (b) allows after a first check at ``first``: each one ``max(1, 10 %)`` of the elapsed
    time after the one before (a deployment ending just after a check is noticed by the next one)."""
    checks = [first]
    while checks[-1] < horizon:
        checks.append(checks[-1] + lag_goal(checks[-1]))
    return checks


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


# --- the schedule itself ---------------------------------------------------------------------------------------------


def test_first_check_within_a_tenth_and_three_tenths_of_a_second() -> None:
    firsts = [DEFAULT_SCHEDULE.first_check(r) for r in FIRST_DRAWS]
    assert min(firsts) == pytest.approx(0.1) and max(firsts) == 0.3
    assert all(0.1 <= f <= 0.3 for f in firsts)
    assert firsts == sorted(firsts, reverse=True)  # a draw towards 1 checks earlier, like a shortened interval


def test_intervals_one_second_then_ten_percent_then_capped() -> None:
    s = DEFAULT_SCHEDULE
    assert [s.next_interval(t, 0.7) for t in (0.1, 0.3, 5.0, 10.0)] == [1.0] * 4
    assert s.next_interval(40.0, 0.0) == pytest.approx(4.0)
    assert s.next_interval(299.0, RAND_ALMOST_ONE) == pytest.approx(29.9)
    assert s.next_interval(10_000.0, RAND_ALMOST_ONE) == s.cap == 30.0
    for elapsed in (0.0, 1.0, 10.0, 100.0, 1000.0):  # no jitter after the first check: nothing shortened
        assert s.next_interval(elapsed, RAND_ALMOST_ONE) == s.next_interval(elapsed, 0.0)


def test_intervals_grow_from_the_first_check_on() -> None:
    for draw in (0.0, 0.5, RAND_ALMOST_ONE):
        checks = check_times(HORIZON, [draw])
        gaps = [b - a for a, b in pairwise([0.0, *checks[:-1]])]  # the last check is the deadline's
        assert gaps[0] <= 0.3 < gaps[1] == pytest.approx(1.0)
        assert all(b >= a - EPS for a, b in pairwise(gaps))


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
    ],
)
def test_schedule_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PollSchedule(**kwargs)


def test_rand_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        DEFAULT_SCHEDULE.next_interval(1.0, 1.5)
    with pytest.raises(ValueError):
        DEFAULT_SCHEDULE.first_check(-0.1)


def test_callers_schedules_keep_their_keywords_and_their_jitter() -> None:
    """lambda_/ssh/workflow build schedules with initial=, growth=, cap=, jitter=; the new fields default."""
    ssh = PollSchedule(initial=1.0, growth=0.25, cap=10.0, jitter=0.1)
    assert ssh == SSH_SCHEDULE
    assert ssh.next_interval(8.0, 0.0) == 2.0
    assert ssh.next_interval(8.0, RAND_ALMOST_ONE) == pytest.approx(1.8)  # their jitter still shortens
    assert 0.1 <= ssh.first_check(0.5) <= 0.3
    at_once = PollSchedule(first_min=0.0, first_max=0.0)
    assert at_once.first_check(RAND_ALMOST_ONE) == at_once.first_check(0.0) == 0.0


# --- (a) + (b) force the checks: the greedy optimum, and why (c) cannot hold everywhere -----------------------------


def test_ours_is_the_greedy_optimum_until_the_cap() -> None:
    """Every check as late as (b) allows, for every first-check draw; from 300 s on, 30 s apart."""
    for draw in (0.0, 0.25, 0.5, 0.75, RAND_ALMOST_ONE):
        ours = check_times(HORIZON, [draw])
        optimum = greedy_optimum(ours[0], 300.0)
        assert ours[: len(optimum) - 1] == pytest.approx(optimum[:-1], rel=1e-12, abs=1e-9)
        after_cap = [b - a for a, b in pairwise(ours[len(optimum) - 2 : -1])]
        assert after_cap[1:] == pytest.approx([30.0] * (len(after_cap) - 1))
        pure = list(DEFAULT_SCHEDULE.check_times(HORIZON, draws([draw])))  # the same, without the driver
        assert pure[:-1] == pytest.approx(ours[:-1], abs=1e-9)  # (the driver's last check is at the deadline)


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
        requests = 1 + sum(1 for c in optimum if c < duration)  # the checks before T, and the one noticing it
        assert requests == 41 > request_budget(duration)
    assert 1 + sum(1 for c in optimum if c < 165.0) <= request_budget(165.0)


def test_a_first_check_after_0_41_s_would_keep_the_budget_everywhere() -> None:
    """The module docstring's aside: (b) and (c) both hold for every T once the first check is late enough."""
    assert not over_budget(greedy_optimum(0.41, HORIZON))
    assert over_budget(greedy_optimum(0.40, HORIZON))


# --- (b) and (c) for every T and every draw ---------------------------------------------------------------------------


def test_lag_within_goal_for_every_duration_and_draw() -> None:
    for draw in FIRST_DRAWS:
        checks = check_times(HORIZON + 60, [draw])
        assert checks[0] <= 0.3  # T up to the first check: lag <= 0.3 s
        for a, b in pairwise(checks[:-1]):  # T just after a is noticed at b
            assert b - a <= lag_goal(a) + EPS, (draw, a, b)
            assert b - a <= DEFAULT_SCHEDULE.max_lag(a) + EPS


def test_requests_within_budget_outside_the_stated_windows() -> None:
    worst = 0.0
    seen: list[tuple[float, float]] = []
    for draw in FIRST_DRAWS:
        checks = check_times(HORIZON + 60, [draw])
        for lo, hi, excess in over_budget(checks[:-1]):
            assert any(w_lo <= lo and hi <= w_hi for w_lo, w_hi in WINDOWS), (draw, lo, hi)
            assert excess < 1  # one request more than floor(budget) at most
            worst = max(worst, excess)
            seen.append((lo, hi))
    assert 0.31 < worst <= MAX_EXCESS
    for w_lo, w_hi in WINDOWS:  # the windows are as tight as stated: each one's start is reached by some draw
        assert min(lo for lo, hi in seen if w_lo <= lo < w_hi) == pytest.approx(w_lo, abs=0.01)
        assert max(hi for lo, hi in seen if w_lo <= lo < w_hi) == w_hi


def test_windows_with_the_latest_first_check() -> None:
    found = over_budget(check_times(HORIZON + 60, [0.0])[:-1])
    assert [bound for lo, hi, _ in found for bound in (lo, hi)] == pytest.approx(
        [bound for window in WINDOWS_FIRST_AT_03 for bound in window], abs=0.01
    )
    assert 0.1 < max(excess for _, _, excess in found) <= MAX_EXCESS_FIRST_AT_03


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


@pytest.mark.parametrize("duration", TABLE)
def test_bench_table_durations_meet_every_goal(duration: float) -> None:
    assert not in_window(duration)
    results = [simulate(duration, [draw]) for draw in FIRST_DRAWS]
    assert max(r for r, _ in results) <= request_budget(duration)
    assert max(lag for _, lag in results) <= lag_goal(duration)
    assert max(r for r, _ in results) == DEFAULT_SCHEDULE.max_requests(duration)


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
    [DEFAULT_SCHEDULE, WAIT_SCHEDULE, SSH_SCHEDULE, TRACE_SCHEDULE, PollSchedule(first_min=0.0, first_max=0.0)],
    ids=["default", "lambda", "ssh", "trace", "at-once"],
)
def test_max_lag_and_max_requests_bound_every_draw(schedule: PollSchedule) -> None:
    for draw in (0.0, 0.5, RAND_ALMOST_ONE):
        checks = check_times(3600.0, [draw], schedule)[:-1]
        assert checks[0] <= schedule.max_lag(0.0) + EPS
        for a, b in pairwise(checks):
            assert b - a <= schedule.max_lag(a) + EPS
        for duration in (0.05, 0.5, 3.0, 42.0, 700.0, 3000.0):
            requests, _ = simulate(duration, [draw], schedule)
            assert requests <= schedule.max_requests(duration)
    for duration in (0.5, 42.0, 700.0):  # and the bound is reached: by the earliest draws
        assert simulate(duration, [RAND_ALMOST_ONE], schedule)[0] == schedule.max_requests(duration)


# --- the driver ------------------------------------------------------------------------------------------------------


def test_first_check_after_the_first_interval_not_at_once() -> None:
    """Right after a create's POST a check at once is a wasted request: the default waits 0.1-0.3 s."""
    clock = FakeClock()
    assert wait_until(lambda: 0, timeout=10, clock=clock, sleep=clock.sleep, rand=lambda: 0.0) == 0
    assert clock.sleeps == pytest.approx([0.3])
    clock = FakeClock()
    assert wait_until(lambda: 0, timeout=10, clock=clock, sleep=clock.sleep, rand=lambda: RAND_ALMOST_ONE) == 0
    assert clock.sleeps == pytest.approx([0.1])


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
    assert starts[0] == pytest.approx(0.3)
    gaps = [b - a for a, b in pairwise(starts)]
    assert gaps[:4] == pytest.approx([1.0] * 4)  # start-to-start, not 1.4 s


def test_slow_check_does_not_sleep_after_the_first() -> None:
    clock = FakeClock()

    def very_slow_check() -> None:
        clock.now += 3.0

    with pytest.raises(OperationTimeout):
        wait_until(very_slow_check, timeout=10.0, clock=clock, sleep=clock.sleep, rand=lambda: 0.0)
    assert clock.sleeps == pytest.approx([0.3])  # only the wait for the first check


def test_callbacks_get_elapsed_and_sleep_lengths() -> None:
    clock = FakeClock()
    ticks: list[float] = []
    planned: list[float] = []

    def refresh(seconds: float) -> None:
        planned.append(seconds)
        clock.now += 0.1  # refreshing credentials takes time: the sleep is shortened to keep the schedule

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
    assert ticks == pytest.approx([0.3, 1.3, 2.3])
    assert planned == pytest.approx([0.3, 1.0, 1.0, 1.0])
    assert clock.sleeps == pytest.approx([0.2, 0.9, 0.9, 0.9])
    assert deployment.checks == pytest.approx([0.3, 1.3, 2.3, 3.3])


def test_exceptions_from_check_propagate() -> None:
    clock = FakeClock()

    def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        wait_until(broken, timeout=10, clock=clock, sleep=clock.sleep, rand=lambda: 0.0)
