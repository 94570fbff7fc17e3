"""How often to ask IM whether a deployment has finished.

Pure: no network, disk or clock access. The clock, ``sleep`` and the random source are passed in, so the
schedule can be tested exactly with a fake clock.

The goals
---------
For an operation that turns out to last ``T`` seconds (from the start of the wait to the real change of state),
for every ``T`` from 0.2 s to 2 h:

(a) the first check comes within 0.1-0.3 s, then the intervals grow;
(b) lag (from the real change to the check that notices it) ``<= max(1 s, 10 % of T)``;
(c) requests (every check, the one that notices included) ``<= 30 + T/15``.

The schedule
------------
The first check is made ``first_max - (first_max - first_min) * rand`` s into the wait (0.1-0.3 s by default:
no check at once, since right after a create's POST that one is a wasted request). The interval after a check
made ``t`` s into the wait is ::

    min(cap, max(initial, growth * t) * (1 - jitter * rand))        rand in [0, 1)

With the defaults (``initial=1``, ``growth=0.1``, ``cap=30``, ``jitter=0``) that is: checks 1 s apart until
``t = 10 s``, then 10 % of the elapsed time, never more than 30 s apart (from ``t = 300 s`` on). The only random
part is the first check: every later one follows deterministically from the time of the one before, so waits
started together stay out of phase, and no interval is ever shortened (which would cost requests) or lengthened
(which would add lag).

Why this schedule, and where (c) cannot hold
--------------------------------------------
A deployment that ends just after a check made at ``t`` is noticed by the next one, so (b) holds for every ``T``
exactly when every interval is ``<= max(1, 0.1 t)``. The schedule ``c[k+1] = c[k] + max(1, 0.1 c[k])`` therefore
makes every check as late as (b) allows: any schedule meeting (b) with the same first check has ``c[k] <=`` this
one's for every ``k`` (``t + max(1, 0.1 t)`` grows with ``t``), so this one makes the fewest requests for every
``T`` at once. Ours is exactly that schedule until the cap takes over at 300 s, where it is about 2 requests
under the budget; from there the cap keeps the rate at 1/30 s, half the budget's 1/15 s, and the lag at 30 s.

Even that optimum exceeds (c) by a fraction of a request shortly after ``T ≈ 150 s``: with the latest first check
(a) allows, 0.3 s, the 40th check comes at ``t = 163.39 s``, so every schedule meeting (a) and (b) needs 41
requests for ``163.39 < T < 165``, where the budget ``30 + T/15`` is below 41. So (a), (b) and (c) cannot all
hold at every ``T``. We keep (b) exactly (users feel lag) and exceed (c) by less than one request, only at

* ``132.41 < T < 135``, ``145.65 < T < 150``, ``160.21 < T < 165``, ``176.23 < T < 180``, ``193.86 < T < 195``
  (over every first check in 0.1-0.3 s; at most 0.32 requests over, i.e. one request more than
  ``floor(30 + T/15)``; for a first check at 0.3 s only at ``148.54 < T < 150``, ``163.39 < T < 165`` and
  ``179.73 < T < 180``, at most 0.11 over).

Outside those windows (c) holds for every ``T`` and every draw; none of 0.2, 1, 10, 30, 60, 300, 600, 1800 and
3600 s is in them. (A first check at 0.41 s or later would meet (b) and (c) everywhere, at the cost of (a).)
The tests check every number here against the greedy optimum, on a grid of ``T`` fine enough to hit the worst
case between any two checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from provisioner.errors import OperationTimeout

T = TypeVar("T")


@dataclass(frozen=True)
class PollSchedule:
    """When to check: first after ``first_min``-``first_max`` s, then every ``initial`` s at first, then
    ``growth`` × elapsed, never more than ``cap`` s apart.

    ``jitter`` is the largest fraction by which an interval after a check is shortened at random; the default
    schedule has none (the first check's random time is enough, see the module docstring).
    ``first_min = first_max = 0`` checks at once.
    """

    initial: float = 1.0
    growth: float = 0.1
    cap: float = 30.0
    jitter: float = 0.0
    first_min: float = 0.1
    first_max: float = 0.3

    def __post_init__(self) -> None:
        if not self.initial > 0:
            raise ValueError(f"initial must be > 0, not {self.initial!r}")
        if not self.growth >= 0:
            raise ValueError(f"growth must be >= 0, not {self.growth!r}")
        if not self.cap >= self.initial:
            raise ValueError(f"cap ({self.cap!r}) must be >= initial ({self.initial!r})")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), not {self.jitter!r}")
        if not 0 <= self.first_min <= self.first_max < math.inf:
            raise ValueError(f"need 0 <= first_min <= first_max, not {self.first_min!r} and {self.first_max!r}")

    def first_check(self, rand: float) -> float:
        """Seconds into the wait of the first check; ``rand`` is a draw in [0, 1) (towards 1: earlier)."""
        _check_rand(rand)
        return self.first_max - (self.first_max - self.first_min) * rand

    def next_interval(self, elapsed: float, rand: float) -> float:
        """Seconds to wait after a check made ``elapsed`` s into the wait; ``rand`` is a draw in [0, 1)."""
        _check_rand(rand)
        base = max(self.initial, self.growth * max(elapsed, 0.0))
        return min(self.cap, base * (1.0 - self.jitter * rand))

    def check_times(self, horizon: float, rand: Callable[[], float]) -> Iterator[float]:
        """Seconds into the wait of each check, up to the first one at or after ``horizon``, for checks that take
        no time (``wait_until`` with an instant ``check``) and no deadline."""
        at = self.first_check(rand())
        while True:
            yield at
            if at >= horizon:
                return
            at += self.next_interval(at, rand())

    def max_lag(self, duration: float) -> float:
        """Upper bound on the lag for an operation lasting ``duration`` s (any jitter draws)."""
        after_a_check = min(self.cap, max(self.initial, self.growth * max(duration, 0.0)))
        return max(self.first_max - max(duration, 0.0), after_a_check)

    def max_requests(self, duration: float) -> int:
        """Upper bound on the checks for an operation lasting ``duration`` s (any jitter draws).

        Every check time grows with every draw, so the earliest draws (``rand -> 1``: first check at ``first_min``,
        every interval shortened by the full jitter) make the most checks before ``duration``.
        """
        return sum(1 for _ in self.check_times(duration, lambda: 1.0))


def _check_rand(rand: float) -> None:
    if not 0 <= rand <= 1:
        raise ValueError(f"rand must be in [0, 1), not {rand!r}")


DEFAULT_SCHEDULE = PollSchedule()


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    rand: Callable[[], float],
    schedule: PollSchedule = DEFAULT_SCHEDULE,
    on_tick: Callable[[float], None] | None = None,
    before_sleep: Callable[[float], None] | None = None,
    what: str = "the operation",
) -> T:
    """Call ``check`` until it returns something other than ``None``, and return that.

    The first check happens ``schedule.first_check`` s into the wait (0.1-0.3 s by default; at once with
    ``first_max=0``). Checks are spaced start-to-start by ``schedule`` (time spent inside ``check`` counts towards
    the interval). No sleep runs past ``timeout`` s: the last one is shortened so that one final check happens at
    the deadline; if that one also returns ``None``, :class:`OperationTimeout` is raised.

    ``on_tick(elapsed)`` is called after every check that returned ``None``; ``before_sleep(seconds)`` just before
    each sleep (e.g. to refresh credentials ahead of a long one). Exceptions from any callback propagate.
    """
    start = clock()
    deadline = start + max(timeout, 0.0)
    wake_at = min(start + schedule.first_check(rand()), deadline)
    while True:
        delay = wake_at - clock()
        if delay > 0 and before_sleep is not None:
            before_sleep(delay)
            delay = wake_at - clock()
        if delay > 0:
            sleep(delay)
        checked_at = clock()
        result = check()
        if result is not None:
            return result
        elapsed = checked_at - start
        if on_tick is not None:
            on_tick(elapsed)
        if clock() >= deadline:
            raise OperationTimeout(
                f"timed out after {timeout:g} s waiting for {what}",
                hint="use a longer --timeout, or check the cluster's state again later",
            )
        wake_at = min(checked_at + schedule.next_interval(elapsed, rand()), deadline)
