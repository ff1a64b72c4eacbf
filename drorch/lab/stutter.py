"""`slow-disk`: pause processes for `pause` seconds of every `period` (SIGSTOP/SIGCONT).

The lab has no device-mapper (no dm-delay) and no cgroup I/O limits, so a slow disk is
emulated where the guests' disks live: the site's pyrepl daemons, which serve the NBD
exports, are frozen part of the time. Every request they serve takes up to `pause`
longer. On SIGTERM, or once every target is gone, all targets are continued and it exits.

    python -m drorch.lab.stutter --pause 0.1 --period 0.2 PID [PID ...]
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from types import FrameType


def _signal_all(pids: list[int], sig: int) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, sig)
            alive.append(pid)
        except ProcessLookupError:
            continue
    return alive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drorch.lab.stutter")
    parser.add_argument("--pause", type=float, required=True)
    parser.add_argument("--period", type=float, required=True)
    parser.add_argument("pids", type=int, nargs="+")
    args = parser.parse_args(argv)
    if not 0 < args.pause < args.period:
        parser.error("need 0 < --pause < --period")
    stopping = False

    def stop(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pids: list[int] = list(args.pids)
    try:
        while pids and not stopping:
            pids = _signal_all(pids, signal.SIGSTOP)
            time.sleep(args.pause)
            pids = _signal_all(pids, signal.SIGCONT)
            time.sleep(args.period - args.pause)
    finally:
        _signal_all(pids, signal.SIGCONT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
