"""Level 1: is the process alive? By pid file (`pidfile:/run/x.pid`) or by name (the
first 15 characters the kernel keeps in /proc/PID/comm, or the full argv[0] basename).

A zombie is dead: it has exited and only waits to be reaped. Linux /proc only."""

from __future__ import annotations

import os
from pathlib import Path

from drorch.monitor.base import CheckResult, CheckStatus, Monitor

PIDFILE = "pidfile:"


def _state(pid: int, proc: Path) -> str | None:
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # "pid (comm) S ..." — comm may hold spaces and parentheses: split after the last ")"
    return stat.rsplit(")", 1)[1].split()[0]


class ProcessMonitor(Monitor):
    def __init__(
        self, name: str, target: str, *, timeout: float = 5.0, proc: Path = Path("/proc")
    ) -> None:
        super().__init__(name, 1, timeout)
        self.target = target
        self.proc = proc

    def check(self) -> CheckResult:
        if self.target.startswith(PIDFILE):
            return self._by_pidfile(Path(self.target[len(PIDFILE) :]))
        return self._by_name(self.target)

    def _by_pidfile(self, path: Path) -> CheckResult:
        try:
            text = path.read_text().strip()
        except OSError as e:
            return CheckResult(CheckStatus.FAILED, f"pid file {path}: {e.strerror or e}")
        if not text.isdigit():
            return CheckResult(CheckStatus.FAILED, f"pid file {path} holds no pid: {text[:40]!r}")
        pid = int(text)
        state = _state(pid, self.proc)
        if state is None:
            return CheckResult(CheckStatus.FAILED, f"process {pid} (from {path}) is gone")
        if state in ("Z", "X"):
            return CheckResult(CheckStatus.FAILED, f"process {pid} (from {path}) has exited")
        return CheckResult(CheckStatus.OK, f"process {pid} (from {path}) is running")

    def _by_name(self, name: str) -> CheckResult:
        me = os.getpid()
        try:
            entries = [p for p in os.listdir(self.proc) if p.isdigit()]
        except OSError as e:
            return CheckResult(CheckStatus.FAILED, f"cannot list {self.proc}: {e}")
        for entry in entries:
            pid = int(entry)
            if pid == me:
                continue
            base = self.proc / entry
            try:
                comm = (base / "comm").read_text().strip()
                argv0 = (base / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
            except OSError:
                continue  # exited while we looked
            if name in (comm, os.path.basename(argv0)) and _state(pid, self.proc) not in (
                None,
                "Z",
                "X",
            ):
                return CheckResult(CheckStatus.OK, f"process {name} is running (pid {pid})")
        return CheckResult(CheckStatus.FAILED, f"no running process is named {name}")
