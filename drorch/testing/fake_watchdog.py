"""A fake Linux watchdog device, for `LinuxWatchdog` (there is no /dev/watchdog here).

It implements the driver's `DeviceOps` with the kernel's semantics: opening starts the
timer, WDIOC_SETTIMEOUT/GETTIMEOUT set and read it (rounded down to what the "hardware"
supports), WDIOC_KEEPALIVE restarts it, and only a close preceded by the magic 'V'
stops it. Any other close leaves it running ("watchdog did not stop!"), so a crashed
agent is still fenced. Time comes from the injected clock.
"""

from __future__ import annotations

import errno
import struct

from drorch.clock import Clock
from drorch.fencing.linux import (
    MAGIC_CLOSE,
    WDIOC_GETTIMEOUT,
    WDIOC_KEEPALIVE,
    WDIOC_SETTIMEOUT,
    LinuxWatchdog,
)


class FakeWatchdogKernel:
    def __init__(
        self,
        clock: Clock,
        *,
        default_timeout: int = 60,
        max_timeout: int = 255,
        grant_extra: int = 0,
        missing: bool = False,
    ) -> None:
        self.clock = clock
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout
        self.grant_extra = grant_extra  # a misbehaving driver that grants a longer timeout
        self.missing = missing
        self.timeout = default_timeout
        self.running = False
        self.is_open = False
        self.expect_close = False
        self.last_ping = 0.0
        self.keepalives = 0
        self.unexpected_closes = 0
        self._fd = 100

    # -- what a test asks -------------------------------------------------------------
    @property
    def fired(self) -> bool:
        return self.running and self.clock.monotonic() - self.last_ping > self.timeout

    # -- DeviceOps ----------------------------------------------------------------------
    def open(self, path: str) -> int:
        if self.missing:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if self.is_open:
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        self.is_open = True
        self.expect_close = False
        if not self.running:
            self.running = True
            self.last_ping = self.clock.monotonic()
        return self._fd

    def _check(self, fd: int) -> None:
        if not self.is_open or fd != self._fd:
            raise OSError(errno.EBADF, "Bad file descriptor")

    def ioctl(self, fd: int, request: int, arg: bytes) -> bytes:
        self._check(fd)
        if self.fired:
            raise OSError(errno.EIO, "watchdog fired")
        if request == WDIOC_SETTIMEOUT:
            (asked,) = struct.unpack("i", arg)
            if asked < 1 or asked > self.max_timeout:
                raise OSError(errno.EINVAL, "Invalid argument")
            self.timeout = asked + self.grant_extra
            self.last_ping = self.clock.monotonic()
            return struct.pack("i", self.timeout)
        if request == WDIOC_GETTIMEOUT:
            return struct.pack("i", self.timeout)
        if request == WDIOC_KEEPALIVE:
            self.keepalives += 1
            self.last_ping = self.clock.monotonic()
            return arg
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    def write(self, fd: int, data: bytes) -> int:
        self._check(fd)
        # Any write is a keepalive; a 'V' anywhere in it arms the magic close.
        self.last_ping = self.clock.monotonic()
        self.expect_close = MAGIC_CLOSE in data
        return len(data)

    def close(self, fd: int) -> None:
        self._check(fd)
        self.is_open = False
        if self.expect_close and not self.fired:
            self.running = False
        else:
            self.unexpected_closes += 1


def fake_linux_watchdog(
    clock: Clock, *, max_timeout: int = 255, grant_extra: int = 0, missing: bool = False
) -> tuple[LinuxWatchdog, FakeWatchdogKernel]:
    """A LinuxWatchdog on a fake device, and the device (to ask whether it fired)."""
    k = FakeWatchdogKernel(clock, max_timeout=max_timeout, grant_extra=grant_extra, missing=missing)
    return LinuxWatchdog("/dev/watchdog", ops=k, clock=clock), k
