"""`wait_until`: the one polling loop. Bounded by a deadline on the injected Clock.

    ok = wait_until(clock, lambda: rep.status().connection == "Connected",
                    clock.monotonic() + 10.0, interval=0.1)

The predicate is asked at least once (even when the deadline has already passed), then
after each sleep; a sleep never runs past the deadline, and the predicate is asked once
more at the deadline so a condition that became true during the last sleep counts. What
the predicate last returned is returned: truthy = it happened, falsy = the deadline
passed first. With a FakeClock the sleeps advance fake time, so tests take no real time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from drorch.clock import Clock

T = TypeVar("T")


def wait_until(
    clock: Clock,
    predicate: Callable[[], T],
    deadline: float,
    *,
    interval: float = 0.1,
) -> T:
    """Ask `predicate` every `interval` seconds until it returns something truthy or the
    monotonic `deadline` passes; return its last answer."""
    if not interval > 0:
        raise ValueError(f"wait_until: interval must be > 0, not {interval!r}")
    while True:
        result = predicate()
        if result:
            return result
        left = deadline - clock.monotonic()
        if left <= 0:
            return result
        clock.sleep(min(interval, left))
