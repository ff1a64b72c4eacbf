"""The injected clock. Logic never calls time.time()/time.sleep() directly (STYLE rule 5)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod


class Clock(ABC):
    """Wall time, monotonic time and sleeping, behind one seam so tests can fake them."""

    @abstractmethod
    def now(self) -> float:
        """Wall-clock seconds since the epoch (for reports and schedules only)."""

    @abstractmethod
    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never go backwards (for deadlines, leases)."""

    @abstractmethod
    def sleep(self, seconds: float) -> None:
        """Block for `seconds` (a fake clock advances instead)."""


class SystemClock(Clock):
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
