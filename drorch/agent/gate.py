"""The watchdog as the agent loop drives it: armed on the first healthy cycle (never one
that could not be fed), fed only when `decide_feed` says so, disarmed cleanly for
maintenance or a clean stop, and let go of (left to fire) otherwise. Each feed's slack is
recorded (`FeedLog`: a warning at 60 % of the timeout, late feeds counted)."""

from __future__ import annotations

import logging

from drorch.agent.view import CycleReport
from drorch.clock import Clock
from drorch.fencing.feeding import FeedLog
from drorch.fencing.watchdog import WatchdogDevice, WatchdogError

log = logging.getLogger("drorch.agent")


class WatchdogGate:
    def __init__(self, watchdog: WatchdogDevice, timeout: float, clock: Clock) -> None:
        self.watchdog, self.timeout, self.clock = watchdog, timeout, clock
        self.feeds = FeedLog(timeout=timeout)
        self.armed = False
        self._arm_error: str | None = None

    def disarm(self, r: CycleReport) -> None:
        if self.armed:
            self.watchdog.disarm()
            self.armed = False
            r.acted.append("watchdog disarmed (maintenance)")

    def feed(self, r: CycleReport) -> None:
        if not self.armed:
            if not r.feed.feed:
                return  # never arm a watchdog we could not feed
            try:
                self.watchdog.arm(self.timeout)
            except WatchdogError as e:
                if self._arm_error != str(e):
                    r.acted.append(f"watchdog cannot be armed: {e}")
                self._arm_error = str(e)
                return
            self.armed = True
            self._arm_error = None
            r.acted.append("watchdog armed")
        if r.feed.feed:
            try:
                slack = self.watchdog.keepalive()
            except WatchdogError as e:
                # a supervisor that fired, died or hangs guarantees nothing any more: let
                # go of it (one that hangs still fires on its own deadline) and arm a new
                # one on the next healthy cycle
                self.watchdog.close()
                self.armed = False
                r.acted.append(f"watchdog feed failed: {e}; re-arming")
                return
            warning = self.feeds.record(slack, self.clock.now())
            if warning:
                log.warning("%s", warning)

    def report(self) -> dict[str, object]:
        return {
            "armed": self.armed,
            "device": self.watchdog.name,
            "pid": getattr(self.watchdog, "pid", None),
            **self.feeds.as_dict(),
        }

    def stop(self, *, clean: bool) -> None:
        """A clean stop disarms the watchdog (magic close); otherwise it is left to fire."""
        if self.armed and clean:
            self.watchdog.disarm()
        else:
            self.watchdog.close()
        self.armed = False
