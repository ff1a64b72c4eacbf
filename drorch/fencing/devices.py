"""Which watchdog a node uses, from `fencing.watchdog` (device | soft | none)."""

from __future__ import annotations

from drorch.fencing.linux import LinuxWatchdog
from drorch.fencing.soft import SelfFenceActions, SoftWatchdog
from drorch.fencing.watchdog import NullWatchdog, WatchdogDevice
from drorch.model.types import Fencing, WatchdogKind


def watchdog_for(fencing: Fencing, actions: SelfFenceActions | None = None) -> WatchdogDevice:
    if fencing.watchdog is WatchdogKind.DEVICE:
        return LinuxWatchdog(fencing.device)
    if fencing.watchdog is WatchdogKind.SOFT:
        return SoftWatchdog(actions)
    return NullWatchdog()
