"""drorch.fencing: watchdog devices (the self-fence deadline) and feed bookkeeping."""

from drorch.fencing.watchdog import (
    Armed,
    NullWatchdog,
    WatchdogDevice,
    WatchdogError,
    require_deadline,
)

__all__ = ["Armed", "NullWatchdog", "WatchdogDevice", "WatchdogError", "require_deadline"]
