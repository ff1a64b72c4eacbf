"""How the scheduler starts a drill: the `Launcher` seam.

The scheduler never runs a drill inside its own loop: a drill takes minutes and the
loop must keep serving other clusters. A launcher starts it and returns a handle the
loop polls. `ProcessLauncher` runs `drorch drill run` as a child process (its own
journal, lock and history row, so a scheduler restart does not lose it);
`drorch.testing.drill_launcher.FakeLauncher` finishes drills on a FakeClock.
"""

from __future__ import annotations

import subprocess
import sys
from abc import ABC, abstractmethod
from pathlib import Path

from drorch.drill.history import DrillRow
from drorch.drill.liveness import DrillProbe
from drorch.drill.schedule import Occurrence


class Launched(ABC):
    """One started drill."""

    @abstractmethod
    def poll(self) -> int | None:
        """None while the drill runs, its exit status once it ended. Never blocks."""

    @abstractmethod
    def describe(self) -> str:
        """For the scheduler's log: what runs, e.g. `pid 4242`."""


class Launcher(ABC):
    @abstractmethod
    def start(self, occ: Occurrence) -> Launched:
        """Start the drill of `occ` now; OSError when it cannot even be started."""


class _Process(Launched):
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def poll(self) -> int | None:
        return self.proc.poll()

    def describe(self) -> str:
        return f"pid {self.proc.pid}, log {self.log}"


class ProcessLauncher(Launcher):
    """`python -m drorch drill run NAME -c CONFIG --scheduled-for NOMINAL --yes`, its
    output appended to `state_dir/drill-logs/CLUSTER-DRILL.log`."""

    def __init__(self, state_dir: Path, python: str = sys.executable) -> None:
        self.state_dir = state_dir
        self.python = python

    def argv(self, occ: Occurrence) -> list[str]:
        return [
            self.python, "-m", "drorch", "drill", "run", occ.ref.drill.name,
            "-c", str(occ.ref.config), "--scheduled-for", repr(occ.nominal), "--yes",
        ]  # fmt: skip

    def start(self, occ: Occurrence) -> Launched:
        logs = self.state_dir / "drill-logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{occ.ref.cluster.name}-{occ.ref.drill.name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                self.argv(occ), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return _Process(proc, log)


class Adopted(Launched):
    """A drill a previous scheduler started that still runs (its process outlived that
    scheduler): watched through its history row until its process is gone. Its exit
    status is not known: poll() gives -1 once it ended."""

    def __init__(self, row: DrillRow, probe: DrillProbe) -> None:
        self.row = row
        self.probe = probe

    def poll(self) -> int | None:
        return None if self.probe.is_live(self.row) else -1

    def describe(self) -> str:
        proc = self.row.data.get("process")
        pid = proc.get("pid") if isinstance(proc, dict) else "?"
        return f"history row {self.row.id}, pid {pid}, started before this scheduler"
