"""The contract every watchdog device that guarantees a deadline must pass.

A harness supplies the device and two powers a test needs: `advance(seconds)` (a fake
clock moves, a real one is slept on) and `fired()` (did the device fence the node?).
Each check returns nothing and raises AssertionError with a reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from drorch.fencing.watchdog import WatchdogDevice, WatchdogError


class WatchdogHarness(ABC):
    timeout: float = 2.0

    @abstractmethod
    def device(self) -> WatchdogDevice:
        """A fresh, unarmed device."""

    @abstractmethod
    def advance(self, seconds: float) -> None: ...

    @abstractmethod
    def fired(self) -> bool:
        """Whether the device has fenced the node (after waiting out any grace)."""


def armed_timeout_not_longer(h: WatchdogHarness) -> None:
    d = h.device()
    got = d.arm(h.timeout)
    try:
        assert 0 < got.timeout <= h.timeout, f"granted {got.timeout}s for {h.timeout}s"
    finally:
        d.disarm()


def fed_device_does_not_fire(h: WatchdogHarness) -> None:
    d = h.device()
    d.arm(h.timeout)
    step = h.timeout / 4
    for _ in range(8):  # two whole timeouts, fed every quarter
        h.advance(step)
        slack = d.keepalive()
        assert slack > 0, f"a feed after {step}s reported slack {slack}"
    assert not h.fired(), "fired although fed every quarter timeout"
    d.disarm()


def starved_device_fires(h: WatchdogHarness) -> None:
    d = h.device()
    d.arm(h.timeout)
    h.advance(h.timeout * 1.5)
    assert h.fired(), f"not fired {h.timeout * 1.5}s after the last feed"
    try:
        d.keepalive()
    except WatchdogError:
        pass
    else:
        raise AssertionError("a keepalive after the deadline was accepted")
    d.close()


def magic_close_disarms(h: WatchdogHarness) -> None:
    d = h.device()
    d.arm(h.timeout)
    d.keepalive()
    d.disarm()
    h.advance(h.timeout * 1.5)
    assert not h.fired(), "fired after a clean disarm"


def close_without_magic_still_fires(h: WatchdogHarness) -> None:
    d = h.device()
    d.arm(h.timeout)
    d.keepalive()
    d.close()  # a crash: the deadline keeps running
    h.advance(h.timeout * 1.5)
    assert h.fired(), "a device dropped without the magic close did not fire"


def keepalive_unarmed_refused(h: WatchdogHarness) -> None:
    d = h.device()
    try:
        d.keepalive()
    except WatchdogError:
        return
    raise AssertionError("keepalive on an unarmed device was accepted")


CHECKS: dict[str, Callable[[WatchdogHarness], None]] = {
    f.__name__: f
    for f in (
        armed_timeout_not_longer,
        fed_device_does_not_fire,
        starved_device_fires,
        magic_close_disarms,
        close_without_magic_still_fires,
        keepalive_unarmed_refused,
    )
}
