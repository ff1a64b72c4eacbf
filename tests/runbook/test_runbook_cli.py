"""`drorch runbook ...` end to end through click: exit codes, error prefix, formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from drorch.cli.main import cli
from drorch.decide.steps import Action
from drorch.runbook.expand import ACTION_STEP_TYPES

CLUSTER = """\
cluster: clitest
primary_site: A
sites:
  A: {nodes: [{name: a1}]}
  B: {nodes: [{name: b1}]}
hypervisor: {driver: sim, state_dir: sim}
"""
RB = """\
name: cli-test
description: |
  Two ledger lines.
params:
  ledger: {type: str}
steps:
  - {id: one, action: ledger.add, with: {ledger: "${params.ledger}", token: one}}
  - id: two
    action: ledger.add
    with: {ledger: "${params.ledger}", token: two}
    confirm: "Write two?"
"""


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "c.yaml").write_text(CLUSTER)
    (tmp_path / "rb.yaml").write_text(RB)
    return {"c": str(tmp_path / "c.yaml"), "rb": str(tmp_path / "rb.yaml"),
            "ledger": str(tmp_path / "ledger"), "dir": str(tmp_path)}  # fmt: skip


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_every_plan_action_maps_to_exactly_one_step_type() -> None:
    assert set(ACTION_STEP_TYPES) == set(Action)
    assert len(set(ACTION_STEP_TYPES.values())) == len(Action)


def test_validate_prints_positions_and_exits_2(setup: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps:\n  - {id: a, action: wiat, with: {seconds: 1}}\n")
    code, out, err = invoke("runbook", "validate", setup["rb"], str(bad))
    assert code == 2
    assert f"{setup['rb']}: ok (cli-test: 2 steps)" in out
    assert err.strip() == (
        f"{bad}:3:21: unknown-action: step 'a': unknown action 'wiat' (did you mean 'wait'?); "
        "`drorch runbook actions` lists them"
    )


def test_run_dry_run_then_for_real_then_show_and_history(setup: dict[str, str]) -> None:
    p = f"ledger={setup['ledger']}"
    code, out, _ = invoke(
        "runbook", "run", setup["rb"], "-c", setup["c"], "--dry-run", "--param", p
    )
    assert code == 0
    assert "would ask: Write two?" in out
    assert not Path(setup["ledger"]).exists()
    code, out, _ = invoke("runbook", "run", setup["rb"], "-c", setup["c"], "--yes", "--param", p)
    assert code == 0, out
    assert Path(setup["ledger"]).read_text() == "add one\nadd two\n"
    code, out, _ = invoke("runbook", "history", "--format", "json")
    runs = json.loads(out)
    assert [r["status"] for r in runs] == ["succeeded", "dry-run"]
    run_id = runs[0]["run_id"]
    for fmt in ("table", "json", "yaml", "md"):
        code, out, _ = invoke("runbook", "show", run_id, "--format", fmt)
        assert code == 0
        if fmt == "json":
            data = json.loads(out)
        elif fmt == "yaml":
            data = yaml.safe_load(out)
        else:
            assert run_id in out and "(--yes) (approved)" in out
            continue
        assert [s["step"] for s in data["steps"]] == ["one", "two"]
        assert data["steps"][1]["confirmed_by"].endswith("(--yes) (approved)")
        assert data["recovery"] is None  # no plan: not a migration or failover run


def test_refusals_exit_3_without_traceback(setup: dict[str, str]) -> None:
    p = f"ledger={setup['ledger']}"
    code, _, err = invoke("runbook", "run", setup["rb"], "-c", setup["c"], "--param", p)
    assert code == 3
    assert err.startswith("drorch: error: needs-confirmation:")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--param", "nope=1"], 2, "unknown param 'nope'"),
        (["--param", "ledger"], 2, "--param 'ledger': write NAME=VALUE"),
        (["--accept-data-loss"], 2, "--accept-data-loss goes with --force"),
        ([], 2, "param 'ledger' is required"),
    ],
)
def test_bad_run_arguments(setup: dict[str, str], args: list[str], code: int, message: str) -> None:
    got, _, err = invoke("runbook", "run", setup["rb"], "-c", setup["c"], "--yes", *args)
    assert got == code
    assert err.startswith("drorch: error: ") and message in err


def test_show_and_resume_of_unknown_runs(setup: dict[str, str]) -> None:
    code, _, err = invoke("runbook", "show", "nope")
    assert code == 2 and err.startswith("drorch: error: no run 'nope'")
    code, _, err = invoke("runbook", "resume", "nope")
    assert code == 2


def test_resume_of_a_finished_run_is_refused(setup: dict[str, str]) -> None:
    p = f"ledger={setup['ledger']}"
    invoke("runbook", "run", setup["rb"], "-c", setup["c"], "--yes", "--param", p)
    run_id = json.loads(invoke("runbook", "history", "--format", "json")[1])[0]["run_id"]
    code, _, err = invoke("runbook", "resume", run_id, "--yes")
    assert code == 3 and "not-resumable" in err


def test_actions_lists_docs(setup: dict[str, str]) -> None:
    code, out, _ = invoke("runbook", "actions", "--format", "json")
    names = {row["action"] for row in json.loads(out)}
    assert {"wait", "plan.execute", "ledger.add"} <= names
    code, out, _ = invoke("runbook", "actions", "wait")
    assert code == 0 and "Wait a fixed time" in out and "seconds" in out
    code, _, err = invoke("runbook", "actions", "wiat")
    assert code == 2 and "did you mean 'wait'" in err


def test_list_shows_runbooks_in_a_dir(setup: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("name: [\n")
    _, out, _ = invoke("runbook", "list", "--dir", setup["dir"], "--format", "json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["cli-test"]["steps"] == 2 and rows["cli-test"]["description"] == "Two ledger lines."
    assert rows["broken"]["description"].startswith("INVALID")


@pytest.mark.parametrize(("typed", "approved"), [("y\n", True), ("n\n", False), ("", False)])
def test_tty_confirmer_records_the_operator(typed: str, approved: bool) -> None:
    from drorch.cli.runbook_output import TtyConfirmer

    with CliRunner().isolation(input=typed, env={"SUDO_USER": "carol"}):
        answer = TtyConfirmer().ask("Promote B?", "promote")
    assert answer.approved is approved
    assert answer.who.startswith("carol (")
