"""The polling schedule and the ``wait_until`` driver, against a fake clock."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from itertools import cycle, pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.errors import OperationTimeout
from provisioner.polling import DEFAULT_SCHEDULE, PollSchedule, wait_until

DURATIONS = [0.05, 0.5, 1, 5, 30, 60, 300, 900, 3600, 14400]
RAND_ALMOST_ONE = math.nextafter(1.0, 0.0)  # the largest draw below 1: the shortest intervals
WORST_DRAWS = {"rand=0": 0.0, "rand->1": RAND_ALMOST_ONE}

TARGET_LAG_RATIO = 0.05  # the goal: lag <= max(1 s, 5 % of T) ... (infeasible together with the budget, see below)


def request_budget(duration: float) -> float:
    return 30 + duration / 15


def lag_bound(duration: float, schedule: PollSchedule = DEFAULT_SCHEDULE) -> float:
    """What the default schedule guarantees: max(1 s, 12.5 % of T), never more than 15 s."""
    return min(schedule.cap, max(1.0, schedule.growth * duration))


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


def worst_lag_over_all_durations(checks: list[float]) -> list[tuple[float, float]]:
    """For each gap between checks: (the shortest duration ending in it, the largest lag it allows).

    A deployment that ends just after the check at ``a`` is noticed at the next check ``b``: lag -> b - a.
    """
    return [(a, b - a) for a, b in pairwise(checks)]


# --- the schedule itself ---------------------------------------------------------------------------------------------


def test_intervals_start_fast_grow_and_cap() -> None:
    s = DEFAULT_SCHEDULE
    assert s.next_interval(0.0, 0.0) <= 1.0
    assert s.next_interval(0.0, RAND_ALMOST_ONE) < 1.0  # sub-second with any jitter
    assert s.next_interval(40.0, 0.0) == pytest.approx(5.0)
    assert s.next_interval(10_000.0, 0.0) == s.cap
    assert s.next_interval(10_000.0, RAND_ALMOST_ONE) == s.cap  # long-run rate is exactly 1/cap
    for elapsed in (0.0, 1.0, 10.0, 100.0, 1000.0):
        assert s.next_interval(elapsed, RAND_ALMOST_ONE) <= s.next_interval(elapsed, 0.0)  # jitter only shortens
        assert s.next_interval(elapsed, RAND_ALMOST_ONE) >= (1 - s.jitter) * s.next_interval(elapsed, 0.0) - 1e-12


def test_intervals_never_shrink_as_time_passes() -> None:
    s = DEFAULT_SCHEDULE
    values = [s.next_interval(t / 10, 0.5) for t in range(0, 50_000)]
    assert values == sorted(values)


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"growth": -0.1}, {"cap": 0.5}, {"jitter": 1.0}, {"jitter": -0.1}],
)
def test_schedule_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PollSchedule(**kwargs)


def test_next_interval_rejects_rand_out_of_range() -> None:
    with pytest.raises(ValueError):
        DEFAULT_SCHEDULE.next_interval(1.0, 1.5)


def test_stated_5_percent_lag_is_incompatible_with_the_request_budget() -> None:
    """Why growth is 0.125 and not 0.05: the fastest schedule allowed by lag <= max(1 s, 5 % of T) alone
    (intervals as long as that lag allows, no jitter) already needs more requests than 30 + T/15."""
    tightest_5_percent = PollSchedule(initial=1.0, growth=TARGET_LAG_RATIO, cap=15.0, jitter=0.0)
    requests, _ = simulate(300.0, [0.0], tightest_5_percent)
    assert requests > request_budget(300.0) + 20
    requests, _ = simulate(14400.0, [0.0], tightest_5_percent)
    assert requests > request_budget(14400.0) + 20


# --- request count and lag for the worst jitter draws -----------------------------------------------------------------


@pytest.mark.parametrize("draw", WORST_DRAWS.values(), ids=WORST_DRAWS.keys())
@pytest.mark.parametrize("duration", DURATIONS)
def test_requests_and_lag_within_bounds(duration: float, draw: float) -> None:
    requests, lag = simulate(duration, [draw])
    assert requests <= request_budget(duration)
    assert 0 <= lag <= lag_bound(duration)
    assert lag <= max(1.0, 0.125 * duration)
    if duration >= 300:
        assert lag <= TARGET_LAG_RATIO * duration  # the 5 % target holds once the interval is capped


@pytest.mark.parametrize("draw", WORST_DRAWS.values(), ids=WORST_DRAWS.keys())
def test_worst_lag_over_every_duration(draw: float) -> None:
    """Not only at the tabled durations: a deployment may end just after any check."""
    for ended_after, lag in worst_lag_over_all_durations(check_times(4 * 3600.0, [draw])):
        assert lag <= lag_bound(ended_after) + 1e-9


def test_request_count_on_a_dense_grid_of_durations() -> None:
    """The all-shortest schedule is the worst case for the request count; check it for every T up to 4 h."""
    checks = check_times(4 * 3600.0 + 1, [RAND_ALMOST_ONE])
    # A deployment lasting T, with checks[i - 1] < T <= checks[i], is noticed by check i: i + 1 requests.
    # The budget grows with T, so the tightest case is T just above checks[i - 1].
    for i in range(1, len(checks)):
        assert i + 1 <= request_budget(checks[i - 1]), (i, checks[i - 1])


def test_measured_worst_case_numbers() -> None:
    """The numbers quoted in the module docstring."""
    worst_slack = max(simulate(t, [RAND_ALMOST_ONE])[0] - request_budget(t) for t in DURATIONS)
    assert worst_slack <= -1.0
    assert simulate(60.0, [0.0])[1] <= 7.5
    assert simulate(3600.0, [0.0])[1] <= 15.0


# --- the driver ------------------------------------------------------------------------------------------------------


def test_returns_first_non_none_result_without_sleeping() -> None:
    clock = FakeClock()
    assert wait_until(lambda: 0, timeout=10, clock=clock, sleep=clock.sleep, rand=lambda: 0.0) == 0
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


def test_success_at_the_final_check_is_returned() -> None:
    clock = FakeClock()
    deployment = Deployment(clock, 100.0)
    assert wait_until(deployment, timeout=100.0, clock=clock, sleep=clock.sleep, rand=lambda: 0.0) == "configured"
    assert clock.elapsed == pytest.approx(100.0)


@pytest.mark.parametrize("timeout", [0.0, -5.0])
def test_zero_timeout_checks_once(timeout: float) -> None:
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
    gaps = [b - a for a, b in pairwise(starts)]
    assert gaps[:4] == pytest.approx([1.0] * 4)  # start-to-start, not 1.4 s


def test_slow_check_does_not_sleep_at_all() -> None:
    clock = FakeClock()

    def very_slow_check() -> None:
        clock.now += 3.0

    with pytest.raises(OperationTimeout):
        wait_until(very_slow_check, timeout=10.0, clock=clock, sleep=clock.sleep, rand=lambda: 0.0)
    assert clock.sleeps == []


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
    assert ticks == pytest.approx([0.0, 1.0, 2.0])
    assert planned == pytest.approx([1.0, 1.0, 1.0])
    assert clock.sleeps == pytest.approx([0.9, 0.9, 0.9])
    assert deployment.checks == pytest.approx([0.0, 1.0, 2.0, 3.0])


def test_exceptions_from_check_propagate() -> None:
    clock = FakeClock()

    def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        wait_until(broken, timeout=10, clock=clock, sleep=clock.sleep, rand=lambda: 0.0)


# --- property test ----------------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    duration=st.floats(min_value=0.01, max_value=4 * 3600.0, allow_nan=False),
    rands=st.lists(st.floats(min_value=0.0, max_value=RAND_ALMOST_ONE), min_size=1, max_size=50),
)
def test_bounds_hold_for_any_jitter_draws(duration: float, rands: list[float]) -> None:
    requests, lag = simulate(duration, rands)
    assert requests <= request_budget(duration)
    assert 0 <= lag <= lag_bound(duration) + 1e-9
