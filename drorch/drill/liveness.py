"""Is the drill a history row says is `running` still running? The `DrillProbe` seam.

A drill records the process that runs it (`own_process()`: pid, its start time in
clock ticks since boot, host) in its history row when it begins. A drill killed with
-9, crashed or on a host that restarted never finishes its row; whoever finds such a
row (the scheduler when it starts, `drorch drill history`) asks a probe and marks it
`interrupted` (drorch.drill.interrupted). `drorch.testing.drill_launcher.FakeProbe`
answers from a set, for FakeClock tests.
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from pathlib import Path

from drorch.drill.history import DrillRow
from drorch.runbook.lock import RunLock


def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (after the parenthesised command, which may hold
    spaces), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 else None


def own_process() -> dict[str, object]:
    """What identifies this process for as long as it lives (a bare pid is reused)."""
    pid = os.getpid()
    return {"pid": pid, "start_ticks": _start_ticks(pid), "host": socket.gethostname()}


class DrillProbe(ABC):
    @abstractmethod
    def is_live(self, row: DrillRow) -> bool:
        """True while the process running `row`'s drill may still be running; False
        only when it surely is not (a wrong False would mark a running drill
        interrupted). Reads only; never blocks for long."""


class ProcessProbe(DrillProbe):
    """Live when the cluster's run lock is held by the row's runbook run, or when the
    process the row names still exists with the same start time; on another host
    (a shared state directory) it cannot tell, so live. A row from before drills
    recorded their process, with no run lock held for it, is not live."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def is_live(self, row: DrillRow) -> bool:
        holder = RunLock(self.state_dir, row.cluster).holder()
        if row.run_id and holder == row.run_id:
            return True
        proc = row.data.get("process")
        if not isinstance(proc, dict) or not isinstance(proc.get("pid"), int):
            return False
        if proc.get("host") != socket.gethostname():
            return True
        ticks = _start_ticks(int(proc["pid"]))
        return ticks is not None and ticks == proc.get("start_ticks")
