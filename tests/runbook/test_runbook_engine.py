"""The engine on the ledger family with a FakeClock: order, when, gates, retries,
timeouts, failure policies and rollback, dry run, the journal."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.runbook.gates import ScriptedConfirmer
from drorch.runbook.journal import Journal
from drorch.runbook.setup import ParamError, RunRefused
from drorch.testing.clock import FakeClock
from drorch.testing.ledger_steps import lines
from tests.runbook.conftest import Lab

THREE = """\
name: three
params:
  second: {type: bool, default: true}
steps:
  - {id: one, action: ledger.add, with: {ledger: LEDGER, token: a}, rollback: undo}
  - id: two
    action: ledger.add
    with: {ledger: LEDGER, token: b}
    when: params.second and steps.one.changed
    rollback: undo
  - {id: three, action: ledger.add, with: {ledger: LEDGER, token: c}}
"""


def test_runs_in_order_and_journals_every_step(lab: Lab) -> None:
    summary = lab.run(THREE)
    assert summary.status == "succeeded"
    assert lab.lines() == ["add a", "add b", "add c"]
    journal = Journal(lab.env.state_dir)
    kinds = [(e.step, e.kind, e.status) for e in journal.events(summary.run_id)]
    assert kinds == [
        ("", "run-start", ""),
        ("one", "start", ""), ("one", "end", "ok"),
        ("two", "start", ""), ("two", "end", "ok"),
        ("three", "start", ""), ("three", "end", "ok"),
        ("", "run-end", "succeeded"),
    ]  # fmt: skip
    record = journal.run(summary.run_id)
    assert record is not None and record.status == "succeeded" and record.user == "tester"


def test_when_false_skips(lab: Lab) -> None:
    summary = lab.run(THREE, {"second": "no"})
    assert summary.status == "succeeded"
    assert lab.lines() == ["add a", "add c"]
    assert "  skipped (when false: params.second and steps.one.changed)" in lab.output.lines


def test_bad_params_are_all_reported(lab: Lab) -> None:
    with pytest.raises(ParamError) as info:
        lab.run(THREE, {"secnd": "x", "second": "maybe"})
    assert info.value.problems == [
        "unknown param 'secnd' (did you mean 'second'?)",
        "param 'second': expected true or false, got 'maybe'",
    ]


def test_failure_rolls_back_completed_steps_in_reverse(lab: Lab) -> None:
    text = THREE.replace(
        "  - {id: three, action: ledger.add, with: {ledger: LEDGER, token: c}}",
        "  - {id: three, action: ledger.flaky, with: {ledger: LEDGER, token: c, failures: 9},"
        " on_failure: rollback}",
    )
    summary = lab.run(text)
    assert summary.status == "rolled-back"
    assert summary.failed_code == "flaky"
    assert lab.lines() == ["add a", "add b", "try c", "remove b", "remove a"]


def test_abort_leaves_things_as_they_are(lab: Lab) -> None:
    text = THREE.replace(
        "action: ledger.add, with: {ledger: LEDGER, token: c}",
        "action: ledger.flaky, with: {ledger: LEDGER, token: c, failures: 1}",
    )
    summary = lab.run(text)
    assert summary.status == "failed"
    assert "three failed: flaky: try 1 failed" in summary.message
    assert lab.lines() == ["add a", "add b", "try c"]


def test_continue_goes_on_and_when_can_test_the_failure(lab: Lab) -> None:
    text = """\
name: fallback
steps:
  - id: live
    action: ledger.flaky
    with: {ledger: LEDGER, token: live, failures: 5, code: not-converging}
    on_failure: continue
  - id: cold
    action: ledger.add
    with: {ledger: LEDGER, token: cold}
    when: steps.live.status == 'failed'
"""
    summary = lab.run(text)
    assert summary.status == "succeeded"
    assert lab.lines() == ["try live", "add cold"]


def test_retries_named_codes_with_backoff_on_the_clock(lab: Lab) -> None:
    text = """\
name: retry
steps:
  - id: flaky
    action: ledger.flaky
    with: {ledger: LEDGER, token: x, failures: 2, code: busy}
    timeout: 10s
    retry: {attempts: 4, backoff: 2s, codes: [busy]}
"""
    summary = lab.run(text)
    assert summary.status == "succeeded"
    assert lab.lines() == ["try x"] * 3
    assert lab.clock.sleeps == [2.0, 4.0]


def test_other_codes_are_not_retried(lab: Lab) -> None:
    text = """\
name: retry
steps:
  - id: flaky
    action: ledger.flaky
    with: {ledger: LEDGER, token: x, failures: 2, code: data-diverged}
    timeout: 10s
    retry: {attempts: 4, backoff: 2s, codes: [busy]}
"""
    assert lab.run(text).status == "failed"
    assert lab.lines() == ["try x"]


def test_retries_stop_at_the_total_deadline(lab: Lab) -> None:
    text = """\
name: retry
steps:
  - id: flaky
    action: ledger.flaky
    with: {ledger: LEDGER, token: x, failures: 50, code: busy}
    retry: {attempts: 50, backoff: 10s, multiplier: 1, codes: [busy], deadline: 35s}
"""
    assert lab.run(text).status == "failed"
    assert lab.lines() == ["try x"] * 4  # at 0, 10, 20, 30 s; the next would end past 35 s
    assert sum(lab.clock.sleeps) == 30.0


def test_timeout_cuts_a_step_short(lab: Lab) -> None:
    text = """\
name: slow
steps:
  - {id: slow, action: ledger.add, with: {ledger: LEDGER, token: s, hold: 60s}, timeout: 10s}
"""
    summary = lab.run(text)
    assert summary.status == "failed" and summary.failed_code == "step-timeout"
    assert lab.clock.monotonic() == pytest.approx(1010.0)


GATED = """\
name: gated
steps:
  - {id: one, action: ledger.add, with: {ledger: LEDGER, token: a}}
  - {id: two, action: ledger.add, with: {ledger: LEDGER, token: b}, confirm: "Write b?"}
"""


def test_gate_answers_are_recorded_with_who(lab: Lab) -> None:
    confirmer = ScriptedConfirmer([True], who="alice (tty)")
    summary = lab.run(GATED, confirmer=confirmer)
    assert summary.status == "succeeded"
    assert confirmer.asked == [("Write b?", "two")]
    events = Journal(lab.env.state_dir).events(summary.run_id)
    confirm = next(e for e in events if e.kind == "confirm")
    assert (confirm.step, confirm.status, confirm.confirmer) == ("two", "approved", "alice (tty)")
    end = next(e for e in events if e.kind == "end" and e.step == "two")
    assert end.confirmer == "alice (tty)"


def test_declined_gate_stops_the_run(lab: Lab) -> None:
    summary = lab.run(GATED, confirmer=ScriptedConfirmer([False], who="bob"))
    assert summary.status == "declined"
    assert lab.lines() == ["add a"]


def test_gates_without_anyone_to_answer_are_refused_before_anything_runs(lab: Lab) -> None:
    with pytest.raises(RunRefused) as info:
        lab.run(GATED, confirmer=None)
    assert info.value.code == "needs-confirmation"
    assert lab.lines() == []


def test_dry_run_changes_nothing_and_says_what_it_would_do(lab: Lab) -> None:
    summary = lab.run(GATED, dry_run=True, confirmer=None)
    assert summary.status == "dry-run"
    assert lab.lines() == []
    assert "  would change: would write 'add a'" in lab.output.lines
    assert "    checked: ledger " + str(lab.ledger) in lab.output.lines
    assert "  would ask: Write b?" in lab.output.lines


def test_second_run_on_the_cluster_is_refused_while_one_holds_the_lock(lab: Lab) -> None:
    from drorch.runbook.lock import RunLock

    other = RunLock(lab.env.state_dir, "tiny")
    other.acquire("20260101T000000Z-beef")
    try:
        with pytest.raises(RunRefused) as info:
            lab.run(THREE)
    finally:
        other.release()
    assert info.value.code == "cluster-locked"
    assert "run 20260101T000000Z-beef" in info.value.message
    assert lab.lines() == []


def test_progress_reaches_the_output(lab: Lab) -> None:
    lab.run("name: w\nsteps: [{id: w, action: wait, with: {seconds: 2}}]\n")
    assert [u[0] for u in lab.output.updates] == ["[1/1] w"] * 3
    assert lab.output.updates[-1][1:] == (2.0, 2.0, "done")


def test_dry_run_that_would_fail_never_rolls_back(lab: Lab) -> None:
    text = """\
name: plan
steps:
  - {id: one, action: ledger.add, with: {ledger: LEDGER, token: a}, rollback: undo}
  - id: go
    action: plan.execute
    with: {kind: migration, to: C}
    on_failure: rollback
"""
    summary = lab.run(text, dry_run=True)
    assert summary.status == "dry-run-failed"
    assert "  WOULD FAIL unknown-site: no site 'C' in cluster tiny" in lab.output.lines
    assert not any("rolling back" in line for line in lab.output.lines)
    assert lab.lines() == []


def test_when_reads_observed_state_of_the_sim_lab(tmp_path: Path) -> None:
    from drorch.envbuild import build_environment_report
    from drorch.model.loader import parse_cluster_text
    from drorch.runbook.engine import Engine
    from drorch.runbook.load import parse_runbook_text
    from drorch.runbook.setup import RecordingOutput, RunOptions
    from tests.conftest import REPO

    cfg = tmp_path / "sim.yaml"
    cfg.write_text((REPO / "lab" / "sim.yaml").read_text())
    cluster, _ = parse_cluster_text(cfg.read_text(), str(cfg))
    env, problems = build_environment_report(cluster, tmp_path, FakeClock())
    assert problems == []
    env.state_dir = tmp_path / "state"
    ledger = tmp_path / "ledger"
    text = f"""\
name: observed
steps:
  - id: runs-at-a
    action: ledger.add
    with: {{ledger: {ledger}, token: a}}
    when: observed.vm.web.A == 'running' and observed.replica.appdata.A.role == 'primary'
  - id: runs-at-b
    action: ledger.add
    with: {{ledger: {ledger}, token: b}}
    when: observed.vm.web.B == 'running' or observed.reachable.B == false
  - id: epoch
    action: ledger.add
    with: {{ledger: {ledger}, token: e}}
    when: observed.epoch >= 0 and observed.replica.appdata.B.out_of_sync_bytes == 0
"""
    output = RecordingOutput()
    engine = Engine(parse_runbook_text(text, "rb.yaml"), cluster, env,
                    RunOptions(output=output, user="t"))  # fmt: skip
    assert engine.start({}).status == "succeeded"
    assert lines(ledger) == ["add a", "add e"]
