"""plan.execute on the sim lab, killed mid-plan (SIGKILL, real subprocess) and resumed:
the journaled plan is continued (never re-planned from a half-moved cluster) and no
plan step runs twice. Plan step types are stand-ins writing to a ledger."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from drorch.runbook.journal import Journal
from drorch.testing.ledger_steps import lines
from tests.conftest import REPO

RUNBOOK = """\
name: move
steps:
  - id: go
    action: plan.execute
    with: {kind: migration, to: B}
    confirm: "Move everything to B?"
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    text = (REPO / "lab" / "sim.yaml").read_text()
    (tmp_path / "sim.yaml").write_text(text)
    (tmp_path / "rb.yaml").write_text(RUNBOOK)
    return {"cfg": tmp_path / "sim.yaml", "rb": tmp_path / "rb.yaml",
            "ledger": tmp_path / "ledger", "state": tmp_path / "state"}  # fmt: skip


def _drorch(
    files: dict[str, Path], plant: list[str], *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DRORCH_STATE_DIR": str(files["state"]),
           "DRORCH_TEST_LEDGER": str(files["ledger"])}  # fmt: skip
    argv = [sys.executable, "-m", "tests.runbook.killer", "--plan-standins", *plant, "--", *args]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def _run(files: dict[str, Path], plant: list[str]) -> subprocess.CompletedProcess[str]:
    return _drorch(files, plant, "runbook", "run", str(files["rb"]), "-c", str(files["cfg"]),
                   "--yes")  # fmt: skip


def test_full_plan_run(files: dict[str, Path]) -> None:
    done = _run(files, ["--after-events", "100000"])
    assert done.returncode == 0, done.stderr
    run = Journal(files["state"]).runs()[0]
    events = Journal(files["state"]).events(run.run_id)
    expand = next(e for e in events if e.kind == "expand")
    children = expand.data["children"]
    assert isinstance(children, list) and len(children) > 10
    assert lines(files["ledger"]) == [
        f"{c['action']} {c['args']['target']}"
        for c in children  # type: ignore[index]
    ]
    assert "go/01-" in done.stdout


@pytest.mark.parametrize("after", [3, 4, 5, 12, 21, 30, 44])
def test_killed_mid_plan_resumes_the_journaled_plan(files: dict[str, Path], after: int) -> None:
    killed = _run(files, ["--after-events", str(after)])
    assert killed.returncode == -signal.SIGKILL
    run_id = Journal(files["state"]).runs()[0].run_id
    resumed = _drorch(files, ["--after-events", "100000"], "runbook", "resume", run_id, "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    events = Journal(files["state"]).events(run_id)
    expands = [e for e in events if e.kind == "expand"]
    assert len(expands) == 1
    children = expands[0].data["children"]
    assert isinstance(children, list)
    wanted = [f"{c['action']} {c['args']['target']}" for c in children]
    assert lines(files["ledger"]) == wanted  # each plan step exactly once, in order
    if after > 4:
        assert "the plan journaled at the start" in resumed.stdout


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "state" not in p.relative_to(root).parts}  # fmt: skip


def test_dry_run_of_the_plan_changes_nothing_on_the_sim_lab(files: dict[str, Path]) -> None:
    # first touch: the sim drivers create their state (VMs running at A, volumes in sync)
    first = _drorch(files, [], "runbook", "run", str(files["rb"]), "-c", str(files["cfg"]),
                    "--dry-run")  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    before = _tree(files["cfg"].parent)
    assert any(name.startswith(".drorch-state") for name in before)
    dry = _drorch(files, [], "runbook", "run", str(files["rb"]), "-c", str(files["cfg"]),
                  "--dry-run")  # fmt: skip
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert _tree(files["cfg"].parent) == before
    assert not files["ledger"].exists()  # no step's run() was called
    assert "would ask: Move everything to B?" in dry.stdout
    assert "would change: would vm.migrate_live web" in dry.stdout
