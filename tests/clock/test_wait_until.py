"""wait_until: the one bounded polling loop, on the injected clock (FakeClock: no real time)."""

from __future__ import annotations

import pytest

from drorch.testing.clock import FakeClock
from drorch.wait import wait_until


def test_returns_as_soon_as_the_predicate_holds() -> None:
    clock = FakeClock()
    answers = iter([False, False, "ready"])
    got = wait_until(clock, lambda: next(answers), clock.monotonic() + 10, interval=0.5)
    assert got == "ready"
    assert clock.sleeps == [0.5, 0.5]


def test_gives_up_at_the_deadline_and_never_sleeps_past_it() -> None:
    clock = FakeClock()
    start = clock.monotonic()
    calls: list[float] = []

    def never() -> bool:
        calls.append(clock.monotonic() - start)
        return False

    assert wait_until(clock, never, start + 1.0, interval=0.3) is False
    assert clock.monotonic() - start == pytest.approx(1.0)
    assert clock.sleeps == pytest.approx([0.3, 0.3, 0.3, 0.1])
    # asked at the start, after each sleep, and once more at the deadline itself
    assert calls == pytest.approx([0.0, 0.3, 0.6, 0.9, 1.0])


def test_asks_once_even_when_the_deadline_has_passed() -> None:
    clock = FakeClock()
    calls = []
    assert wait_until(clock, lambda: calls.append(1) or 0, clock.monotonic() - 5) == 0
    assert calls == [1] and clock.sleeps == []
    assert wait_until(clock, lambda: 7, clock.monotonic() - 5) == 7


def test_a_condition_that_turns_true_in_the_last_sleep_counts() -> None:
    clock = FakeClock()
    deadline = clock.monotonic() + 1.0
    assert wait_until(clock, lambda: clock.monotonic() >= deadline, deadline, interval=0.4)


def test_a_non_positive_interval_is_refused() -> None:
    clock = FakeClock()
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="interval must be > 0"):
            wait_until(clock, lambda: False, clock.monotonic() + 1, interval=bad)
