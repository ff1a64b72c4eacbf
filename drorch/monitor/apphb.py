"""Level 3 for applications: a heartbeat over a unix socket, in the spirit of apphbd.

The monitor owns a listening unix socket. The application connects and writes
`HEARTBEAT <n>` lines, n rising. `check()` drains what arrived (non-blocking, bounded)
and judges the time since the last rising beat:

- within `warn_after`: OK;
- past `warn_after`: WARNING (still passing: the application is late);
- past `fatal_after`: FAILED;
- no beat yet: WAITING until `fatal_after` has passed since the monitor started.

A connection that sends anything else, or a line longer than 256 bytes, is closed; the
others keep beating. `AppHeartbeat` is the pure judge; `AppHeartbeatMonitor` the I/O.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import socket
from dataclasses import dataclass
from pathlib import Path

from drorch.clock import Clock
from drorch.monitor.base import CheckResult, CheckStatus, Monitor

LINE = re.compile(rb"HEARTBEAT (\d{1,18})")
MAX_LINE = 256
MAX_CLIENTS = 16
MAX_READS_PER_CHECK = 64


@dataclass
class AppHeartbeat:
    warn_after: float
    fatal_after: float
    started_at: float
    last_n: int | None = None
    last_beat_at: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.warn_after < self.fatal_after:
            raise ValueError("need 0 < warn_after < fatal_after")

    def beat(self, n: int, now: float) -> None:
        if self.last_n is None or n > self.last_n:
            self.last_n, self.last_beat_at = n, now

    def verdict(self, now: float) -> CheckResult:
        if self.last_beat_at is None:
            waited = now - self.started_at
            if waited <= self.fatal_after:
                return CheckResult(CheckStatus.WAITING, f"no heartbeat yet ({waited:.1f}s)")
            return CheckResult(CheckStatus.FAILED, f"no heartbeat in {waited:.1f}s")
        quiet = now - self.last_beat_at
        if quiet > self.fatal_after:
            return CheckResult(
                CheckStatus.FAILED,
                f"last heartbeat {self.last_n} was {quiet:.1f}s ago"
                f" (fatal after {self.fatal_after:g}s)",
            )
        if quiet > self.warn_after:
            return CheckResult(
                CheckStatus.WARNING,
                f"heartbeat late: {quiet:.1f}s since beat {self.last_n}"
                f" (warn after {self.warn_after:g}s)",
            )
        return CheckResult(CheckStatus.OK, f"heartbeat {self.last_n}, {quiet:.1f}s ago")


class AppHeartbeatMonitor(Monitor):
    def __init__(
        self,
        name: str,
        path: str | Path,
        clock: Clock,
        *,
        warn_after: float,
        fatal_after: float,
    ) -> None:
        super().__init__(name, 3, timeout=0.0)
        self.path = Path(path)
        self.clock = clock
        self.judge = AppHeartbeat(warn_after, fatal_after, clock.monotonic())
        self.closed_bad = 0
        if self.path.is_socket():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(self.path))
            except OSError:
                self.path.unlink()  # stale: nobody listens on it any more
            else:
                raise OSError(f"{self.path} is in use by another heartbeat monitor")
            finally:
                probe.close()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        os.chmod(self.path, 0o660)
        self._listener.listen(MAX_CLIENTS)
        self._listener.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        self._partial: dict[socket.socket, bytes] = {}

    def check(self) -> CheckResult:
        for _ in range(MAX_READS_PER_CHECK):
            events = self._sel.select(timeout=0)
            if not events:
                break
            for key, _mask in events:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept()
                else:
                    self._read(sock)
        return self.judge.verdict(self.clock.monotonic())

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        if len(self._partial) >= MAX_CLIENTS:
            conn.close()
            return
        conn.setblocking(False)
        self._partial[conn] = b""
        self._sel.register(conn, selectors.EVENT_READ, None)

    def _drop(self, conn: socket.socket) -> None:
        self._sel.unregister(conn)
        self._partial.pop(conn, None)
        conn.close()

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            self._drop(conn)
            return
        if not data:
            self._drop(conn)
            return
        buffer = self._partial[conn] + data
        *lines, rest = buffer.split(b"\n")
        if len(rest) > MAX_LINE:
            self.closed_bad += 1
            self._drop(conn)
            return
        now = self.clock.monotonic()
        for line in lines:
            m = LINE.fullmatch(line.rstrip(b"\r"))
            if m is None:
                self.closed_bad += 1
                self._drop(conn)
                return
            self.judge.beat(int(m.group(1)), now)
        self._partial[conn] = rest

    def close(self) -> None:
        for conn in list(self._partial):
            self._drop(conn)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(self._listener)
        self._listener.close()
        self._sel.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
