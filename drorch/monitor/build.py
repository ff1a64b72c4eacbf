"""A `Monitor` for each configured check (`model.Monitor`): the one place that maps
`type:` to an implementation."""

from __future__ import annotations

from pathlib import Path

from drorch.clock import Clock
from drorch.model.types import Monitor as MonitorSpec
from drorch.model.types import MonitorType
from drorch.monitor.apphb import AppHeartbeatMonitor
from drorch.monitor.base import CheckResult, CheckStatus, Monitor
from drorch.monitor.domain import DomainMonitor
from drorch.monitor.heartbeat import HeartbeatStatus, HeartbeatTracker, policy_for
from drorch.monitor.probes import CommandMonitor, HttpMonitor, TcpMonitor
from drorch.monitor.process import ProcessMonitor
from drorch.monitor.serial_log import HeartbeatMonitor
from drorch.remote.base import CommandRunner
from drorch.virt.base import Hypervisor

UNIX = "unix:"
_STATUS = {
    HeartbeatStatus.HEALTHY: CheckStatus.OK,
    HeartbeatStatus.WAITING: CheckStatus.WAITING,
    HeartbeatStatus.FAILED: CheckStatus.FAILED,
}


class SerialHeartbeatMonitor(Monitor):
    """Level 3 for guests: the `HEARTBEAT <n>` lines on a serial console log."""

    def __init__(self, name: str, path: str | Path, clock: Clock, interval: float) -> None:
        super().__init__(name, 3, timeout=0.0)
        self.inner = HeartbeatMonitor(path, clock, policy_for(interval))

    def check(self) -> CheckResult:
        v = self.inner.poll()
        return CheckResult(_STATUS[v.status], v.reason)

    def rearm(self) -> None:
        self.inner.poll()  # consume what is in the log now: those beats are history
        self.inner.tracker = HeartbeatTracker(self.inner.clock.monotonic(), self.inner.policy)

    def close(self) -> None:
        self.inner.close()


def monitor_for(
    spec: MonitorSpec,
    *,
    runner: CommandRunner,
    clock: Clock,
    base_dir: Path,
    hypervisor: Hypervisor | None = None,
) -> Monitor:
    """`hypervisor`: this site's, for `type: domain` (none: that check fails, saying so)."""
    t = spec.type
    if t is MonitorType.DOMAIN:
        return DomainMonitor(spec.name, spec.target, hypervisor, timeout=spec.timeout)
    if t is MonitorType.PROCESS:
        return ProcessMonitor(spec.name, spec.target, timeout=spec.timeout)
    if t is MonitorType.TCP:
        return TcpMonitor(spec.name, spec.target, timeout=spec.timeout, level=spec.level)
    if t is MonitorType.HTTP:
        return HttpMonitor(
            spec.name,
            spec.target,
            timeout=spec.timeout,
            body_contains=spec.expect,
            level=spec.level,
        )
    if t is MonitorType.COMMAND:
        return CommandMonitor(
            spec.name,
            spec.target,
            runner,
            timeout=spec.timeout,
            expect=spec.expect,
            level=spec.level,
        )
    if spec.target.startswith(UNIX):
        # apphbd's deadlines: late after one interval, dead after two (or interval+timeout)
        return AppHeartbeatMonitor(
            spec.name,
            base_dir / spec.target[len(UNIX) :],
            clock,
            warn_after=spec.interval,
            fatal_after=max(2 * spec.interval, spec.interval + spec.timeout),
        )
    return SerialHeartbeatMonitor(spec.name, base_dir / spec.target, clock, spec.interval)
