"""The real step types under kill -9 (a real `drorch runbook run` subprocess on a copy of
lab/sim.yaml), then `drorch runbook resume`: a step killed after its effect is found in
effect by its probe (recorded `recovered`, not run again), and the cluster ends up moved."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from drorch.envbuild import build_environment
from drorch.model.loader import load_cluster
from drorch.observe import observe
from drorch.runbook.journal import Journal
from tests.conftest import REPO
from tests.runbook.steps_lab import PLAN


def _drorch(tmp: Path, plant: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DRORCH_STATE_DIR": str(tmp / "state")}
    argv = [sys.executable, "-m", "tests.runbook.killer", *plant, "--", *args]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "step_type", ["vm.migrate_live", "replication.promote", "vm.shutdown", "service.start"]
)
def test_killed_after_a_real_effect_resumes_without_running_it_twice(
    tmp_path: Path, step_type: str
) -> None:
    shutil.copy(REPO / "lab" / "sim.yaml", tmp_path / "sim.yaml")
    shutil.copytree(REPO / "lab" / "xml", tmp_path / "xml")
    (tmp_path / "rb.yaml").write_text(PLAN)
    run = (
        "runbook",
        "run",
        str(tmp_path / "rb.yaml"),
        "-c",
        str(tmp_path / "sim.yaml"),
        "--param",
        "to=B",
        "--yes",
    )
    killed = _drorch(tmp_path, ["--after-run", step_type], *run)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    journal = Journal(tmp_path / "state")
    run_id = journal.runs()[0].run_id
    resumed = _drorch(tmp_path, ["--after-events", "100000"], "runbook", "resume", run_id, "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "already in effect (interrupted earlier): not run again" in resumed.stdout
    ends = [e for e in journal.events(run_id) if e.kind == "end" and e.step.startswith("go/")]
    keys = [e.step for e in ends]
    assert len(keys) == len(set(keys)) == 21  # every plan step ended exactly once
    recovered = [e for e in ends if e.status == "recovered"]
    assert len(recovered) == 1 and recovered[0].action == step_type
    starts = [
        e for e in journal.events(run_id) if e.kind == "start" and e.step == recovered[0].step
    ]
    assert len(starts) == 1  # its run() was called once, before the kill
    cluster = load_cluster(tmp_path / "sim.yaml")  # a fresh environment observes
    vms = observe(cluster, build_environment(cluster, tmp_path)).vm_states
    assert vms[("drorch-web", "B")] == "running" and vms[("drorch-db", "B")] == "running"
