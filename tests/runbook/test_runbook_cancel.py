"""A run cancelled from another thread (the agent's, when its site fences itself) stops
before its next step or retry, fails with code "cancelled" and rolls nothing back: the
fence already stopped what runs, and a rollback needs the quorum the site just lost."""

from __future__ import annotations

from drorch.cancel import Cancel
from drorch.runbook.journal import Journal
from tests.runbook.conftest import Lab

RETRYING = """\
name: retrying
steps:
  - {id: one, action: ledger.add, with: {ledger: LEDGER, token: a}, rollback: undo}
  - id: two
    action: ledger.flaky
    with: {ledger: LEDGER, token: b, failures: 5, code: busy}
    timeout: 10s
    retry: {attempts: 6, backoff: 10s, codes: [busy]}
    on_failure: rollback
  - {id: three, action: ledger.add, with: {ledger: LEDGER, token: c}}
"""


def test_a_cancel_during_a_backoff_ends_the_run_without_rollback(lab: Lab) -> None:
    cancel = Cancel()
    sleep = lab.clock.sleep

    def sleep_then_cancel(seconds: float) -> None:  # the other thread, at 0.5 s in
        sleep(seconds)
        if sum(lab.clock.sleeps) >= 0.5:
            cancel.set("site A fenced itself: quorum lost")

    lab.clock.sleep = sleep_then_cancel  # type: ignore[method-assign]
    summary = lab.run(RETRYING, cancel=cancel)
    assert summary.status == "failed" and summary.failed_code == "cancelled"
    assert "run cancelled: site A fenced itself: quorum lost" in summary.message
    assert lab.lines() == ["add a", "try b"], "no further try, no step three, no rollback"
    assert sum(lab.clock.sleeps) < 1.0, "the 10 s backoff was cut short"
    record = Journal(lab.env.state_dir).run(summary.run_id)
    assert record is not None and record.status == "failed"


def test_a_run_cancelled_before_a_step_does_not_run_it(lab: Lab) -> None:
    cancel = Cancel()
    cancel.set("first reason")
    cancel.set("a later reason is not kept")
    summary = lab.run(RETRYING, cancel=cancel)
    assert summary.status == "failed" and summary.failed_code == "cancelled"
    assert "first reason" in summary.message
    assert lab.lines() == []


def test_an_uncancelled_token_changes_nothing(lab: Lab) -> None:
    summary = lab.run(RETRYING.replace("failures: 5", "failures: 2"), cancel=Cancel())
    assert summary.status == "succeeded"
    assert lab.lines() == ["add a", "try b", "try b", "try b", "add c"]
    assert sum(lab.clock.sleeps) == 10.0 + 20.0, "the backoffs are slept in full"
