"""Resume after kill -9: a real runner subprocess is killed at every journal boundary
and in the middle of each step kind; `drorch runbook resume` must finish the run with
no non-idempotent step run twice and no step lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from drorch.cli.main import cli
from drorch.runbook.journal import Journal
from drorch.testing.ledger_steps import lines
from tests.conftest import REPO

CLUSTER = """\
cluster: killme
primary_site: A
sites:
  A: {nodes: [{name: a1}]}
  B: {nodes: [{name: b1}]}
hypervisor: {driver: sim, state_dir: sim}
"""

RUNBOOK = """\
name: kill-me
params:
  ledger: {type: str}
steps:
  - {id: a, action: ledger.add, with: {ledger: "${params.ledger}", token: a}, rollback: undo}
  - {id: pause, action: wait, with: {seconds: 0.05}}
  - id: b
    action: ledger.add
    with: {ledger: "${params.ledger}", token: b}
    confirm: "Write b?"
    rollback: undo
  - id: flaky
    action: ledger.flaky
    with: {ledger: "${params.ledger}", token: f, failures: 1, code: busy}
    timeout: 5s
    retry: {attempts: 3, backoff: 0.01s, codes: [busy]}
  - {id: c, action: ledger.add, with: {ledger: "${params.ledger}", token: c}}
"""
EXPECTED = ["add a", "add b", "add c"]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "rb.yaml").write_text(RUNBOOK)
    return {"dir": tmp_path, "cluster": tmp_path / "cluster.yaml", "rb": tmp_path / "rb.yaml",
            "ledger": tmp_path / "ledger", "state": tmp_path / "state"}  # fmt: skip


def _runner(files: dict[str, Path], plant: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DRORCH_STATE_DIR": str(files["state"])}
    args = [sys.executable, "-m", "tests.runbook.killer", *plant, "--", "runbook", "run",
            str(files["rb"]), "-c", str(files["cluster"]), "--yes",
            "--param", f"ledger={files['ledger']}"]  # fmt: skip
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip


def _only_run(files: dict[str, Path]) -> str:
    runs = Journal(files["state"]).runs()
    assert len(runs) == 1
    return runs[0].run_id


def _resume(files: dict[str, Path], run_id: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["runbook", "resume", run_id, "--yes"],
                                env={"DRORCH_STATE_DIR": str(files["state"])})  # fmt: skip
    return result.exit_code, result.output


def _full_run_events(files: dict[str, Path]) -> int:
    proc = _runner(files, ["--after-events", "100000"])
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    run_id = _only_run(files)
    return len(Journal(files["state"]).events(run_id))


def test_a_full_run_for_reference(files: dict[str, Path]) -> None:
    n = _full_run_events(files)
    assert n == 15  # run-start, 5 steps start+end, a gate, a retry and its 2nd start, run-end
    assert lines(files["ledger"]) == [*EXPECTED[:2], "try f", "try f", "add c"]


@pytest.mark.parametrize("after", range(1, 15))
def test_kill_after_every_journal_event_then_resume(files: dict[str, Path], after: int) -> None:
    proc = _runner(files, ["--after-events", str(after)])
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    run_id = _only_run(files)
    code, output = _resume(files, run_id)
    assert code == 0, output
    ledger = lines(files["ledger"])
    assert [x for x in ledger if x.startswith("add")] == EXPECTED, output
    assert Journal(files["state"]).run(run_id).status == "succeeded"  # type: ignore[union-attr]


@pytest.mark.parametrize("token", ["a", "b", "c"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_kill_in_the_middle_of_a_step_then_resume(
    files: dict[str, Path], token: str, when: str
) -> None:
    proc = _runner(files, ["--in-step", f"{token}:{when}"])
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    run_id = _only_run(files)
    events = Journal(files["state"]).events(run_id)
    assert events[-1].kind == "start" and events[-1].step == token
    code, output = _resume(files, run_id)
    assert code == 0, output
    assert [x for x in lines(files["ledger"]) if x.startswith("add")] == EXPECTED
    probe = next(e for e in Journal(files["state"]).events(run_id) if e.kind == "probe")
    assert probe.step == token
    assert probe.status == ("done" if when == "after" else "not-done")
    if when == "after":
        assert "already in effect (interrupted earlier): not run again" in output


def test_external_kill_during_a_held_step(files: dict[str, Path]) -> None:
    slow = RUNBOOK.replace("token: b}", "token: b, hold: 30s}")
    files["rb"].write_text(slow)
    proc = _runner(files, ["--after-events", "100000"])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # bounded: until b has started
            if files["state"].exists() and any(
                e.step == "b" and e.kind == "start"
                for r in Journal(files["state"]).runs()
                for e in Journal(files["state"]).events(r.run_id)
            ):
                break
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_id = _only_run(files)
    # the lock went with the process: history says interrupted, a new run is refused
    hist = CliRunner().invoke(cli, ["runbook", "history", "--format", "json"],
                              env={"DRORCH_STATE_DIR": str(files["state"])})  # fmt: skip
    assert '"status": "interrupted"' in hist.output
    again = CliRunner().invoke(
        cli, ["runbook", "run", str(files["rb"]), "-c", str(files["cluster"]), "--yes",
              "--param", f"ledger={files['ledger']}"],
        env={"DRORCH_STATE_DIR": str(files["state"])},
    )  # fmt: skip
    assert again.exit_code == 3
    assert f"run {run_id}" in again.output and "interrupted" in again.output
    files["rb"].write_text(RUNBOOK)  # resume uses the journaled runbook, not the file
    code, output = _resume(files, run_id)
    assert code == 0, output
    assert [x for x in lines(files["ledger"]) if x.startswith("add")] == EXPECTED
