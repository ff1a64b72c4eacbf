"""`/dev/watchdog` through the Linux watchdog API (Documentation/watchdog/watchdog-api).

Arming opens the device (which starts the timer), sets the timeout with
WDIOC_SETTIMEOUT and reads back what the driver granted with WDIOC_GETTIMEOUT (drivers
round to what the hardware supports). Feeding is WDIOC_KEEPALIVE. A clean stop writes the
magic character 'V' before closing; any other close leaves the timer running, so a
crashed agent is still fenced.

The system calls go through `DeviceOps`, so tests drive the driver against a fake device
(`drorch.testing.fake_watchdog.FakeWatchdogKernel`): this machine has no /dev/watchdog.
"""

from __future__ import annotations

import fcntl
import math
import os
import struct
from typing import Protocol

from drorch.clock import Clock, SystemClock
from drorch.fencing.watchdog import Armed, WatchdogDevice, WatchdogError


def _ioc(direction: int, nr: int, size: int = 4) -> int:
    return (direction << 30) | (size << 16) | (ord("W") << 8) | nr


_READ, _READ_WRITE = 2, 3
WDIOC_KEEPALIVE = _ioc(_READ, 5)
WDIOC_SETTIMEOUT = _ioc(_READ_WRITE, 6)
WDIOC_GETTIMEOUT = _ioc(_READ, 7)
MAGIC_CLOSE = b"V"


class DeviceOps(Protocol):
    """The four system calls the driver makes."""

    def open(self, path: str) -> int: ...

    def ioctl(self, fd: int, request: int, arg: bytes) -> bytes: ...

    def write(self, fd: int, data: bytes) -> int: ...

    def close(self, fd: int) -> None: ...


class OsDeviceOps:
    def open(self, path: str) -> int:
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC)

    def ioctl(self, fd: int, request: int, arg: bytes) -> bytes:
        return bytes(fcntl.ioctl(fd, request, arg))

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def close(self, fd: int) -> None:
        os.close(fd)


class LinuxWatchdog(WatchdogDevice):
    def __init__(
        self,
        path: str = "/dev/watchdog",
        ops: DeviceOps | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._path = path
        self._ops: DeviceOps = ops or OsDeviceOps()
        self._clock = clock or SystemClock()
        self._fd: int | None = None
        self._timeout = 0.0
        self._last_feed = 0.0

    @property
    def name(self) -> str:
        return f"linux:{self._path}"

    def arm(self, timeout: float) -> Armed:
        if self._fd is not None:
            raise WatchdogError(f"{self._path} is already armed")
        # The API takes whole seconds; round down so the deadline is never longer.
        seconds = math.floor(timeout)
        if seconds < 1:
            raise WatchdogError(f"{self._path}: the watchdog API cannot do {timeout:g}s (< 1 s)")
        try:
            fd = self._ops.open(self._path)
        except OSError as e:
            raise WatchdogError(f"cannot open {self._path}: {e.strerror or e}") from e
        self._fd = fd
        try:
            self._ops.ioctl(fd, WDIOC_SETTIMEOUT, struct.pack("i", seconds))
            (granted,) = struct.unpack("i", self._ops.ioctl(fd, WDIOC_GETTIMEOUT, b"\0" * 4))
        except OSError as e:
            self._refuse(f"{self._path}: setting the timeout failed: {e.strerror or e}")
        if granted > seconds or granted < 1:
            self._refuse(
                f"{self._path} granted a {granted}s timeout for the {seconds}s asked: a longer"
                " deadline would let this node outlive its lease"
            )
        self._timeout = float(granted)
        self._last_feed = self._clock.monotonic()
        return Armed(self._timeout, self.name)

    def _refuse(self, message: str) -> None:
        # The device is open and ticking with a timeout we do not trust: try a clean stop
        # (it is ours, the agent has not started acting) and report.
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                self._ops.write(fd, MAGIC_CLOSE)
            finally:
                self._ops.close(fd)
        raise WatchdogError(message)

    def keepalive(self) -> float:
        if self._fd is None:
            raise WatchdogError(f"{self._path} is not armed")
        now = self._clock.monotonic()
        try:
            self._ops.ioctl(self._fd, WDIOC_KEEPALIVE, b"\0" * 4)
        except OSError as e:
            raise WatchdogError(f"{self._path}: keepalive failed: {e.strerror or e}") from e
        slack = self._timeout - (now - self._last_feed)
        self._last_feed = now
        return slack

    def disarm(self) -> None:
        if self._fd is None:
            return
        fd = self._fd
        try:
            if self._ops.write(fd, MAGIC_CLOSE) != 1:
                raise WatchdogError(f"{self._path}: the magic close was not written")
        except OSError as e:
            raise WatchdogError(f"{self._path}: magic close failed: {e.strerror or e}") from e
        self._fd = None
        self._ops.close(fd)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            self._ops.close(fd)
