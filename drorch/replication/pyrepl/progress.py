"""Resync progress: bytes done, bytes to go, and an estimate of the time left."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ResyncProgress:
    total_bytes: int
    started: float  # monotonic seconds
    done_bytes: int = 0
    sent_bytes: int = 0  # payload bytes that crossed the wire (zero regions cost none)
    regions_sent: int = 0
    finished: float | None = None

    @property
    def remaining_bytes(self) -> int:
        return max(self.total_bytes - self.done_bytes, 0)

    def eta_seconds(self, now: float) -> float | None:
        """Time left at the average rate so far; None until anything is done."""
        elapsed = now - self.started
        if self.remaining_bytes == 0:
            return 0.0
        if self.done_bytes <= 0 or elapsed <= 0:
            return None
        return self.remaining_bytes / (self.done_bytes / elapsed)

    def as_dict(self, now: float) -> dict[str, Any]:
        end = self.finished if self.finished is not None else now
        elapsed = max(end - self.started, 0.0)
        return {
            "total_bytes": self.total_bytes,
            "done_bytes": self.done_bytes,
            "remaining_bytes": self.remaining_bytes,
            "sent_bytes": self.sent_bytes,
            "regions_sent": self.regions_sent,
            "eta_seconds": self.eta_seconds(now),
            "elapsed_seconds": round(elapsed, 3),
            "finished": self.finished is not None,
        }
