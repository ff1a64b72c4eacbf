"""Reading a guest's serial console log, and the heartbeat monitor built on it.

`SerialLogTail` follows a file like `tail -F`: a file that exists when the tail starts is
read from its end (only new output counts); a file created later is read from its start;
when the file is replaced (rotation: another inode) the rest of the old file is read and
then the new one from its start; when it shrinks (truncation) reading restarts at 0.
Each poll reads at most `max_read` bytes, so a flood cannot stall the caller.

`HeartbeatMonitor` polls the tail, feeds `HeartbeatParser` and `HeartbeatTracker`, and
stamps beats with the injected clock.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from drorch.clock import Clock
from drorch.monitor.heartbeat import (
    HeartbeatParser,
    HeartbeatPolicy,
    HeartbeatTracker,
    HeartbeatVerdict,
)

DEFAULT_MAX_READ = 1 << 20


class SerialLogTail:
    def __init__(self, path: str | Path, *, max_read: int = DEFAULT_MAX_READ) -> None:
        self.path = Path(path)
        self.max_read = max_read
        self.rotations = 0
        self.truncations = 0
        self._file: BinaryIO | None = None
        self._identity: tuple[int, int] | None = None
        self._from_start = False
        self._open()  # an existing log is read from where it is now

    def _open(self) -> bool:
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - kept open between polls
        except FileNotFoundError:
            self._from_start = True
            return False
        stat = os.fstat(handle.fileno())
        if not self._from_start:
            handle.seek(stat.st_size)
        self._file = handle
        self._identity = (stat.st_dev, stat.st_ino)
        return True

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._identity = None

    def read(self) -> tuple[bytes, bool]:
        """New bytes since the last call, and whether the stream restarted (rotation or
        truncation: the caller drops any partial line)."""
        if self._file is None and not self._open():
            return b"", False
        assert self._file is not None
        data = self._file.read(self.max_read)
        if data:
            return data, False
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            # Moved away and not yet re-created: the next file is new, read it whole.
            self._close_file()
            self._from_start = True
            self.rotations += 1
            return b"", True
        if (stat.st_dev, stat.st_ino) != self._identity:
            self._close_file()
            self._from_start = True
            self.rotations += 1
            return b"", True
        if stat.st_size < self._file.tell():
            self._file.seek(0)
            self.truncations += 1
            return self._file.read(self.max_read), True
        return b"", False

    def close(self) -> None:
        self._close_file()

    def __enter__(self) -> SerialLogTail:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class HeartbeatMonitor:
    """Watch one guest's serial log; `poll()` returns the current verdict."""

    def __init__(
        self,
        path: str | Path,
        clock: Clock,
        policy: HeartbeatPolicy | None = None,
        *,
        baseline: int | None = None,
        expect_continuation: bool = False,
    ) -> None:
        self.clock = clock
        self.policy = policy or HeartbeatPolicy()
        self.parser = HeartbeatParser()
        self.tail = SerialLogTail(path)
        self.tracker = HeartbeatTracker(
            clock.monotonic(), self.policy, baseline, expect_continuation
        )

    def poll(self) -> HeartbeatVerdict:
        for _ in range(64):  # bounded: at most 64 × max_read bytes per poll
            data, restarted = self.tail.read()
            if restarted:
                self.parser.reset()
            if data:
                self.tracker.observe(self.parser.feed(data), self.clock.monotonic())
            elif not restarted:
                break
        return self.tracker.verdict(self.clock.monotonic())

    def wait_until_rising(self, timeout: float, interval: float = 0.5) -> HeartbeatVerdict:
        """Poll until HEALTHY, FAILED for good (a restart where continuation is expected),
        or `timeout` seconds; returns the last verdict."""
        deadline = self.clock.monotonic() + timeout
        verdict = self.poll()
        for _ in range(math.ceil(timeout / interval) + 1):
            if verdict.healthy or self.tracker.violation is not None:
                break
            left = deadline - self.clock.monotonic()
            if left <= 0:
                break
            self.clock.sleep(min(interval, left))
            verdict = self.poll()
        return verdict

    def follow(self, path: str | Path, *, expect_continuation: bool) -> None:
        """Switch to another log (the guest now runs elsewhere). After a live migration
        pass expect_continuation=True: the counter must go on above the last n seen."""
        last = self.tracker.last_n
        self.tail.close()
        self.parser = HeartbeatParser()
        self.tail = SerialLogTail(path)
        self.tracker = HeartbeatTracker(
            self.clock.monotonic(), self.policy, last, expect_continuation
        )

    def close(self) -> None:
        self.tail.close()

    def __enter__(self) -> HeartbeatMonitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
