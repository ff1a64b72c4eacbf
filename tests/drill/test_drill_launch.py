"""The real launcher: the scheduler's ProcessLauncher starts `drorch drill run` as a
child process, which runs the shipped live drill on the simulated lab and records it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from drorch.drill.history import History
from drorch.drill.launch import ProcessLauncher
from drorch.drill.schedule import next_occurrences, refs_of
from tests.drill.simlab import SimLab


def test_process_launcher_runs_a_drill_to_its_history_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRORCH_STATE_DIR", str(tmp_path / "state"))
    lab = SimLab(tmp_path)
    ref = next(r for r in refs_of(lab.config, lab.cluster) if r.drill.kind.value == "live")
    occ = next(next_occurrences(ref, 1.8e9))
    handle = ProcessLauncher(lab.state).start(occ)
    rc = None
    for _ in range(1200):  # bounded: 120 s on a loaded machine
        rc = handle.poll()
        if rc is not None:
            break
        time.sleep(0.1)
    log = (lab.state / "drill-logs" / "hq-dr-weekly-live.log").read_text()
    assert rc == 0, log
    assert "drill weekly-live: succeeded" in log
    (row,) = History(lab.state).rows()
    assert row.result == "succeeded" and row.scheduled_for == occ.nominal and row.run_id
