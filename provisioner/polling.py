"""How often to ask IM whether a deployment has finished.

Pure: no network, disk or clock access. The clock, ``sleep`` and the random source are passed in, so the
schedule can be tested exactly with a fake clock.

The schedule
------------
For an operation that turns out to last ``T`` seconds we want

* few requests: at most ``30 + T/15`` (one every 15 s in the long run, plus a fixed allowance for the start);
* a short lag between the moment the state really changes and the moment we notice it.

The interval after a check made ``t`` seconds into the wait is ::

    min(cap, max(initial, growth * t) * (1 - jitter * rand))        rand in [0, 1)

Jitter only ever *shortens* an interval (so it cannot add lag) and the cap is applied after the jitter (so in the
long run the interval is exactly ``cap`` and the request rate is exactly ``1/cap``). With the defaults
(``initial=1``, ``growth=0.125``, ``cap=15``, ``jitter=0.1``), for every ``T`` and every jitter draw:

* lag ``<= max(initial, growth * T)`` and ``<= cap``, i.e. at most 1 s for ``T <= 8 s``, at most 12.5 % of ``T``,
  at most 15 s ever, hence at most 5 % of ``T`` once ``T >= 300 s``;
* requests ``<= 30 + T/15`` (worst case, every interval shortened by the full jitter: still 1.6 under the budget).

Why not lag <= max(1 s, 5 % of T) everywhere: that alone forces at least ~75 checks by ``T = 300 s`` (20 one-second
checks, then intervals growing by at most 5 % per check from 1 s to 15 s: ln 15 / ln 1.05 ≈ 55 more), and for every
large ``T`` at least ``T/15 + 54`` checks, over the ``30 + T/15`` budget. ``growth`` ≈ 0.12 is the smallest growth
that keeps the request budget with a 1 s floor; the tests check both bounds numerically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from provisioner.errors import OperationTimeout

T = TypeVar("T")


@dataclass(frozen=True)
class PollSchedule:
    """Intervals between checks: ``initial`` s at first, then ``growth`` × elapsed, never above ``cap`` s.

    ``jitter`` is the largest fraction by which an interval is shortened at random (see the module docstring).
    """

    initial: float = 1.0
    growth: float = 0.125
    cap: float = 15.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not self.initial > 0:
            raise ValueError(f"initial must be > 0, not {self.initial!r}")
        if not self.growth >= 0:
            raise ValueError(f"growth must be >= 0, not {self.growth!r}")
        if not self.cap >= self.initial:
            raise ValueError(f"cap ({self.cap!r}) must be >= initial ({self.initial!r})")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), not {self.jitter!r}")

    def next_interval(self, elapsed: float, rand: float) -> float:
        """Seconds to wait after a check made ``elapsed`` s into the wait; ``rand`` is a draw in [0, 1)."""
        if not 0 <= rand <= 1:
            raise ValueError(f"rand must be in [0, 1), not {rand!r}")
        base = max(self.initial, self.growth * max(elapsed, 0.0))
        return min(self.cap, base * (1.0 - self.jitter * rand))

    def max_lag(self, duration: float) -> float:
        """Upper bound on the lag for an operation lasting ``duration`` s (any jitter draws)."""
        return min(self.cap, max(self.initial, self.growth * max(duration, 0.0)))


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

    The first check happens at once. Checks are spaced start-to-start by ``schedule`` (time spent inside ``check``
    counts towards the interval). No sleep runs past ``timeout`` s: the last one is shortened so that one final check
    happens at the deadline; if that one also returns ``None``, :class:`OperationTimeout` is raised.

    ``on_tick(elapsed)`` is called after every check that returned ``None``; ``before_sleep(seconds)`` just before
    each sleep (e.g. to refresh credentials ahead of a long one). Exceptions from any callback propagate.
    """
    start = clock()
    deadline = start + max(timeout, 0.0)
    while True:
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
        delay = wake_at - clock()
        if delay > 0 and before_sleep is not None:
            before_sleep(delay)
            delay = wake_at - clock()
        if delay > 0:
            sleep(delay)
