"""The injected clock. Logic never calls time.time()/time.sleep() directly (STYLE rule 5)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime


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


def iso_utc(seconds: float | None) -> str | None:
    """Wall-clock seconds as ISO 8601 UTC (`2026-12-03T09:14:05Z`), or None."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
