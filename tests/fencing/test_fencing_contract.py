"""Every deadline-guaranteeing watchdog passes the same contract: LinuxWatchdog on the
fake device (no /dev/watchdog here) and SoftWatchdog as a real supervisor process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drorch.fencing.soft import SelfFenceActions, SoftWatchdog
from drorch.fencing.watchdog import WatchdogDevice
from drorch.testing.clock import FakeClock
from drorch.testing.contract_watchdog import CHECKS, WatchdogHarness
from drorch.testing.fake_watchdog import FakeWatchdogKernel, fake_linux_watchdog


class FakeLinuxHarness(WatchdogHarness):
    timeout = 4.0

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.kernel: FakeWatchdogKernel | None = None

    def device(self) -> WatchdogDevice:
        dev, self.kernel = fake_linux_watchdog(self.clock)
        return dev

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def fired(self) -> bool:
        assert self.kernel is not None
        return self.kernel.fired


class SoftHarness(WatchdogHarness):
    timeout = 0.8

    def __init__(self, tmp: Path) -> None:
        self.log = tmp / "fired.log"
        self.devices: list[SoftWatchdog] = []

    def device(self) -> WatchdogDevice:
        d = SoftWatchdog(SelfFenceActions(log=str(self.log)))
        self.devices.append(d)
        return d

    def advance(self, seconds: float) -> None:
        time.sleep(seconds)

    def fired(self) -> bool:
        d = self.devices[-1]
        # It fires within a tick of the deadline; a short wait (well under the timeout,
        # so a fed device is not starved by it) lets the exit be seen.
        code = d.wait_fired(timeout=0.25)
        return code == 2 and self.log.exists()

    def cleanup(self) -> None:
        for d in self.devices:
            proc = d._proc or (d._released[-1] if d._released else None)
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
            d.close()


@pytest.fixture(params=["linux-fake", "soft"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WatchdogHarness]:
    if request.param == "linux-fake":
        yield FakeLinuxHarness()
        return
    h = SoftHarness(tmp_path)
    yield h
    h.cleanup()


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_watchdog_contract(harness: WatchdogHarness, check: str) -> None:
    CHECKS[check](harness)
