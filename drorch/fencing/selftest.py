"""`drorch watchdog test`: arm the configured watchdog, feed it, measure the slack, and
disarm it with the magic close. Measures; decides nothing."""

from __future__ import annotations

from dataclasses import dataclass

from drorch.clock import Clock
from drorch.fencing.feeding import FeedLog
from drorch.fencing.watchdog import WatchdogDevice, WatchdogError


@dataclass(frozen=True)
class SelfTest:
    device: str
    asked_timeout: float
    timeout: float
    interval: float
    log: FeedLog
    warnings: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "asked_timeout": self.asked_timeout,
            "granted_timeout": self.timeout,
            "interval": self.interval,
            **self.log.as_dict(),
            "warnings": list(self.warnings),
            "result": "ok" if not self.warnings else "late feeds",
        }


def run_selftest(
    device: WatchdogDevice, timeout: float, *, feeds: int, interval: float, clock: Clock
) -> SelfTest:
    if interval >= timeout:
        raise WatchdogError(
            f"a feed interval of {interval:g}s would let the {timeout:g}s watchdog fire"
        )
    armed = device.arm(timeout)
    log = FeedLog(timeout=armed.timeout)
    warnings: list[str] = []
    try:
        for _ in range(feeds):
            clock.sleep(interval)
            slack = device.keepalive()
            warning = log.record(slack, at=clock.now())
            if warning:
                warnings.append(warning)
    except BaseException:
        device.close()  # leave it armed: an interrupted test must not pretend health
        raise
    device.disarm()
    return SelfTest(device.name, timeout, armed.timeout, interval, log, tuple(warnings))
