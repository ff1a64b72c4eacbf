"""`drorch migrate`/`failback` must not say "nothing to do" (exit 0) while a run on the
cluster is in progress or was interrupted: half-way through a move the volumes are
already primary at the target, so the cluster only looks as if it ran there."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from drorch.cli.main import cli
from drorch.runbook.journal import RUNNING, Journal, RunRecord
from drorch.runbook.lock import RunLock
from drorch.statedir import default_state_dir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DRORCH_RUNBOOKS", str(REPO / "runbooks"))
    config = tmp_path / "sim.yaml"
    config.write_text((REPO / "lab" / "sim.yaml").read_text())
    shutil.copytree(REPO / "lab" / "xml", tmp_path / "xml")
    return config


def drorch(*argv: str) -> Result:
    return CliRunner().invoke(cli, list(argv), catch_exceptions=False)


def test_a_healthy_lab_at_a_is_nothing_to_do(lab: Path) -> None:
    result = drorch("migrate", "--to", "A", "-c", str(lab), "--yes")
    assert result.exit_code == 0, result.output
    assert "nothing to do: the cluster already runs at A" in result.output


def test_an_interrupted_run_is_not_nothing_to_do(lab: Path) -> None:
    journal = Journal(default_state_dir())
    journal.create_run(RunRecord(
        "20261203T000000Z-dead", "hq-dr", "hurricane-planned-migration", "x.yaml", "",
        str(lab), {}, False, "root", "vm", 1, time.time(), None, RUNNING, "",
    ))  # fmt: skip
    journal.close()
    for argv in (("migrate", "--to", "A"), ("failback", "--to", "A")):
        result = drorch(*argv, "-c", str(lab), "--yes")
        assert result.exit_code == 3, result.output
        assert "nothing to do" not in result.output
        assert "interrupted-run: run 20261203T000000Z-dead" in result.output
        assert "drorch runbook resume 20261203T000000Z-dead" in result.output


def test_a_run_in_progress_is_not_nothing_to_do(lab: Path) -> None:
    lock = RunLock(default_state_dir(), "hq-dr")
    lock.acquire("20261203T000000Z-busy")
    try:
        result = drorch("migrate", "--to", "A", "-c", str(lab), "--yes")
    finally:
        lock.release()
    assert result.exit_code == 3, result.output
    assert "nothing to do" not in result.output
    assert "cluster-locked: run 20261203T000000Z-busy is in progress" in result.output
    after = drorch("migrate", "--to", "A", "-c", str(lab), "--yes")
    assert after.exit_code == 0, after.output
