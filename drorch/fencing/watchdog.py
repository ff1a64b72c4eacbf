"""The watchdog seam: a deadline that fences this node unless the agent keeps feeding it.

A watchdog is fed only while the agent is healthy (the feeding policy lives in the
agent); the device's job is only to guarantee that a node which stops feeding is fenced
within `timeout` seconds, whatever else happens to the agent (crash, kill -9, SIGSTOP,
a hung disk).

Three devices implement the contract:

- `LinuxWatchdog` (fencing/linux.py) drives `/dev/watchdog`: the kernel or hardware
  resets the machine.
- `SoftWatchdog` (fencing/soft.py) is a separate supervisor process that carries out the
  self-fence (kills the node's resource processes and guests, runs the configured
  commands) when it is not fed.
- `NullWatchdog` (here) arms nothing. It guarantees nothing, and `require_deadline`
  refuses it wherever a deadline is needed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


class WatchdogError(Exception):
    """The device cannot be armed, fed or disarmed. The agent treats any such error as
    'the deadline is no longer guaranteed' and self-fences."""


@dataclass(frozen=True)
class Armed:
    """What arming granted: the device's own timeout (it may round the one asked for)."""

    timeout: float
    device: str


class WatchdogDevice(ABC):
    """One watchdog. Not thread-safe: one owner (the agent's loop) calls it."""

    #: False only for NullWatchdog: nothing fences a node that stops feeding it.
    guarantees_deadline: bool = True

    @abstractmethod
    def arm(self, timeout: float) -> Armed:
        """Start the deadline: from now on the node is fenced unless `keepalive()` is called
        at least every `timeout` seconds. Returns the timeout the device actually uses;
        raises WatchdogError if it cannot be armed, or if the granted timeout is longer
        than the one asked for (a longer deadline would break the timing chain)."""

    @abstractmethod
    def keepalive(self) -> float:
        """Restart the deadline. Returns the slack the device saw: seconds that were left
        before it would have fired. Raises WatchdogError if the device is gone or not
        armed; the caller must not assume the deadline was restarted."""

    @abstractmethod
    def disarm(self) -> None:
        """Clean stop ('magic close'): the deadline is cancelled and the node is not fenced.
        Only a deliberate, healthy stop calls this. Raises WatchdogError if the device
        refused (then it stays armed and will fire)."""

    @abstractmethod
    def close(self) -> None:
        """Let go of the device WITHOUT disarming, as a crash would: an armed deadline keeps
        running and fires. Idempotent."""

    @property
    @abstractmethod
    def name(self) -> str:
        """What to call this device in status and errors."""


class NullWatchdog(WatchdogDevice):
    """Arms nothing and fences nothing (`fencing.watchdog: none`)."""

    guarantees_deadline = False

    def __init__(self) -> None:
        self._timeout: float | None = None

    def arm(self, timeout: float) -> Armed:
        self._timeout = timeout
        return Armed(timeout, self.name)

    def keepalive(self) -> float:
        if self._timeout is None:
            raise WatchdogError("null watchdog: keepalive before arm")
        return self._timeout

    def disarm(self) -> None:
        self._timeout = None

    def close(self) -> None:
        self._timeout = None

    @property
    def name(self) -> str:
        return "none"


def require_deadline(device: WatchdogDevice, *, site: str, automatic_failover: bool) -> None:
    """Refuse a device that cannot guarantee the self-fence deadline where one is needed:
    a site that runs primary resources while the other site may take over automatically
    relies on this node being gone within watchdog_timeout."""
    if automatic_failover and not device.guarantees_deadline:
        raise WatchdogError(
            f"site {site} runs primary resources with failover: automatic, but its watchdog"
            f" is '{device.name}': nothing would fence it before the other site takes over"
            " (configure fencing.watchdog: device or soft)"
        )
