"""The soft watchdog's supervisor process: `python -m drorch.fencing.softdog ...`.

It runs apart from the agent (its own session), so a crashed, killed or stopped agent
cannot take the deadline down with it. The agent talks to it over two pipes:

    stdin   b"k" keepalive       -> stdout "ok <slack_ms>"
            b"V" magic close     -> stdout "disarmed", exit 0
            EOF without "V"      -> the deadline keeps running (like /dev/watchdog)
    stdout  "armed <timeout_s>" once at start

When the deadline passes it fences: SIGKILL to every listed PID and every PID named in
a listed pid file (read at fire time, so restarted resources are caught too), then each
`--command` with a bounded runtime, then a JSON line in `--log`, then exit 2. The loop
checks itself against the deadline: a supervisor that wakes up after the deadline (it
was starved or stopped) fences at once instead of granting more time. SIGTERM or
SIGINT while armed also fences: only the magic close stops a watchdog.

This module uses time and signals directly: it IS the clock-watching process, and it
must work when nothing else of drorch does.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

FIRED_EXIT = 2
TICK = 0.05
COMMAND_TIMEOUT = 10.0


def _pids(pids: Sequence[int], pidfiles: Sequence[str]) -> list[int]:
    found = list(pids)
    for name in pidfiles:
        try:
            text = Path(name).read_text().split()
        except OSError:
            continue
        found.extend(int(t) for t in text if t.isdigit())
    return found


def fence(args: argparse.Namespace, reason: str) -> int:
    started = time.time()
    killed: list[int] = []
    for pid in _pids(args.kill_pid, args.kill_pidfile):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
        except PermissionError as e:
            print(f"softdog: cannot kill {pid}: {e}", file=sys.stderr)
    commands: list[dict[str, object]] = []
    for cmd in args.command:
        try:
            done = subprocess.run(
                cmd, shell=True, timeout=args.command_timeout, capture_output=True, check=False
            )
            commands.append({"command": cmd, "rc": done.returncode})
        except subprocess.TimeoutExpired:
            commands.append({"command": cmd, "rc": None, "error": "timed out"})
    record = {
        "event": "fired",
        "at": started,
        "reason": reason,
        "killed": killed,
        "commands": commands,
        "pid": os.getpid(),
    }
    if args.log:
        with open(args.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
    print(f"softdog: fired: {reason}", file=sys.stderr, flush=True)
    return FIRED_EXIT


def supervise(args: argparse.Namespace) -> int:
    timeout: float = args.timeout
    stop_requested: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop_requested.append(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    feeds = os.dup(0)
    out = sys.stdout
    deadline = time.monotonic() + timeout
    out.write(f"armed {timeout:g}\n")
    out.flush()
    feeding = True
    # Bounded by the deadline: every pass either extends it (a feed) or moves toward it.
    while True:
        now = time.monotonic()
        if stop_requested:
            return fence(args, f"stopped by {stop_requested[0]} while armed")
        if now > deadline:
            late = now - deadline
            return fence(args, f"not fed for {timeout:g}s (noticed {late * 1000:.0f} ms late)")
        if not feeding:
            time.sleep(min(TICK, deadline - now))
            continue
        try:
            ready, _, _ = select.select([feeds], [], [], min(TICK, max(0.0, deadline - now)))
        except InterruptedError:  # pragma: no cover - PEP 475 retries select
            continue
        if not ready:
            continue
        data = os.read(feeds, 64)
        if not data:
            feeding = False  # the agent went away without the magic close: keep ticking
            continue
        now = time.monotonic()
        if now > deadline:
            continue  # a feed that arrives after the deadline does not revive the node
        if b"V" in data:
            out.write("disarmed\n")
            out.flush()
            return 0
        slack = deadline - now
        deadline = now + timeout
        try:
            out.write(f"ok {slack * 1000:.0f}\n" * data.count(b"k"))
            out.flush()
        except (BrokenPipeError, OSError):
            feeding = False


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="drorch-softdog", description=__doc__)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--kill-pid", type=int, action="append", default=[])
    p.add_argument("--kill-pidfile", action="append", default=[])
    p.add_argument("--command", action="append", default=[])
    p.add_argument("--command-timeout", type=float, default=COMMAND_TIMEOUT)
    p.add_argument("--log", default=None)
    args = p.parse_args(argv)
    if not 0 < args.timeout <= 3600:
        p.error("--timeout must be between 0 and 3600 seconds")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return supervise(parse(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
