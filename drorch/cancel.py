"""`Cancel`: one thread asks work running on another to stop, and says why.

The agent cancels the runbook runs it started when its site fences itself or loses
quorum: a run must not go on retrying a step against guests the fence just stopped,
while it holds the cluster's run lock and so keeps every other recovery waiting. The
engine looks at the token before each step and between retries (`sleep`), never in the
middle of a step: a step in flight ends on its own deadline.
"""

from __future__ import annotations

import threading

from drorch.clock import Clock

SLICE = 0.25  # a cancelled sleep ends within this long


class Cancelled(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Cancel:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reason = ""

    def set(self, reason: str) -> None:
        """The first reason is kept (the loop may ask again on later cycles)."""
        with self._lock:
            if not self._event.is_set():
                self._reason = reason
                self._event.set()

    @property
    def reason(self) -> str | None:
        """Why it was cancelled, or None while it was not."""
        with self._lock:
            return self._reason if self._event.is_set() else None

    def check(self) -> None:
        """Raise Cancelled when cancelled."""
        why = self.reason
        if why is not None:
            raise Cancelled(why)

    def sleep(self, clock: Clock, seconds: float) -> None:
        """`clock.sleep(seconds)` in slices, raising Cancelled as soon as it is cancelled
        (with a FakeClock the slices advance fake time, like any sleep)."""
        left = max(0.0, seconds)
        self.check()
        while left > 0:
            step = min(SLICE, left)
            clock.sleep(step)
            left -= step
            self.check()
