"""Processes the lab started, found through their PID files and stopped by PID only.

A PID file can outlive its process and the PID can be reused, so every PID is checked
against /proc/<pid>/cmdline before it is signalled.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from drorch.clock import Clock
from drorch.wait import wait_until


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def live_pid(pid_file: Path, expect: str) -> int | None:
    """The PID in `pid_file` if that process is alive and its command line contains
    `expect` (e.g. "libvirtd"); None otherwise."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 1:
        return None
    if expect not in cmdline(pid):
        return None
    if _is_zombie(pid):
        return None
    return pid


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def stop_pid(pid: int, expect: str, clock: Clock, grace: float = 10.0) -> str:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns what happened."""
    if expect not in cmdline(pid):
        return f"pid {pid} is not {expect} any more; left alone"
    os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        return expect not in cmdline(pid) or _is_zombie(pid)

    if wait_until(clock, gone, clock.monotonic() + grace, interval=0.1):
        return f"stopped {expect} (pid {pid}) with SIGTERM"
    if expect in cmdline(pid):
        os.kill(pid, signal.SIGKILL)
        if not wait_until(clock, gone, clock.monotonic() + 5.0, interval=0.05):
            return f"{expect} (pid {pid}) survived SIGKILL for 5 s"
        return f"killed {expect} (pid {pid}) after {grace:g} s without exiting"
    return f"stopped {expect} (pid {pid}) with SIGTERM"


def spawn_detached(
    argv: list[str],
    *,
    log: Path,
    pid_file: Path,
    netns: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start `argv` in its own session (inside `netns` when given), stdin from /dev/null,
    stdout/stderr appended to `log`, and write its PID to `pid_file`. sh backgrounds it
    and exits at once, so it is nobody's child here; `setsid` (not a group leader in a
    background job) and `ip netns exec` both exec, so the PID is the program's own."""
    import subprocess

    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    full = ["ip", "netns", "exec", netns, *argv] if netns else argv
    script = 'setsid "$@" </dev/null >>"$DRORCH_SPAWN_LOG" 2>&1 & echo $!'
    done = subprocess.run(
        ["sh", "-c", script, "sh", *full],
        env={**(env if env is not None else os.environ), "DRORCH_SPAWN_LOG": str(log)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    pid = int(done.stdout.strip())
    pid_file.write_text(f"{pid}\n")
    return pid
