"""`shell` and `notify` with real processes and files, through the engine."""

from __future__ import annotations

from pathlib import Path

from drorch.clock import SystemClock
from drorch.environment import Environment
from drorch.model.reports import ConfigError
from drorch.runbook.engine import Engine
from drorch.runbook.journal import Journal
from drorch.runbook.load import parse_runbook_text
from drorch.runbook.setup import RecordingOutput, RunOptions
from tests.runbook.conftest import tiny_cluster


def run(tmp: Path, text: str, dry_run: bool = False) -> tuple[str, str, RecordingOutput]:
    env = Environment(clock=SystemClock(), base_dir=tmp, state_dir=tmp / "state")
    out = RecordingOutput()
    rb = parse_runbook_text(text, "rb.yaml")
    summary = Engine(rb, tiny_cluster(), env, RunOptions(dry_run=dry_run, output=out)).start({})
    return summary.status, summary.failed_code, out


def test_shell_runs_and_unless_makes_it_idempotent(tmp_path: Path) -> None:
    text = """\
name: sh
steps:
  - id: touch
    action: shell
    with: {command: "echo x >> hits; touch done", unless: "test -e done"}
"""
    assert run(tmp_path, text, dry_run=True)[0] == "dry-run"
    assert not (tmp_path / "hits").exists()
    assert run(tmp_path, text)[0] == "succeeded"
    status, _, out = run(tmp_path, text)
    assert status == "succeeded"
    assert (tmp_path / "hits").read_text() == "x\n"
    assert "  ok: already done (unless exited 0)" in out.lines
    _, _, dry = run(tmp_path, text, dry_run=True)
    assert "    checked: unless 'test -e done': exit 0" in dry.lines


def test_shell_failures_are_coded(tmp_path: Path) -> None:
    fail = (
        "name: f\nsteps: [{id: f, action: shell, with: {argv: [sh, -c, 'echo bad >&2; exit 4']}}]\n"
    )
    assert run(tmp_path, fail)[:2] == ("failed", "command-failed")
    slow = "name: s\nsteps: [{id: s, action: shell, with: {command: 'sleep 5', timeout: 0.3s}}]\n"
    assert run(tmp_path, slow)[:2] == ("failed", "command-timeout")
    node = "name: n\nsteps: [{id: n, action: shell, with: {command: 'true', node: zz}}]\n"
    assert run(tmp_path, node)[:2] == ("failed", "unknown-node")


def test_shell_needs_exactly_one_of_command_and_argv() -> None:
    text = "name: x\nsteps: [{id: a, action: shell, with: {command: 'true', argv: ['true']}}]\n"
    try:
        parse_runbook_text(text, "rb.yaml")
    except ConfigError as exc:
        assert "give exactly one of 'command' and 'argv'" in str(exc)
    else:
        raise AssertionError("accepted both command and argv")


def test_notify_appends_once_with_run_and_step(tmp_path: Path) -> None:
    text = "name: n\nsteps: [{id: tell, action: notify, with: {message: moved to B, file: log}}]\n"
    status, _, _ = run(tmp_path, text)
    assert status == "succeeded"
    (line,) = (tmp_path / "log").read_text().splitlines()
    run_id = Journal(tmp_path / "state").runs()[0].run_id
    assert line.endswith(f" run={run_id} step=tell moved to B")
    missing = (
        "name: n\nsteps: [{id: t, action: notify, with: {message: m, file: /nonexistent/x}}]\n"
    )
    assert run(tmp_path, missing, dry_run=True)[0] == "dry-run-failed"
