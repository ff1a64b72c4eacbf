"""Run reports: timeline durations and confirmers; RTO, RPO and downtime from the data
steps report; unknown is unknown, never 0."""

from __future__ import annotations

from drorch.runbook.journal import Event, RunRecord
from drorch.runbook.report import effective_status, run_report

T0 = 1_000.0


def ev(seq: int, at: float, step: str, what: str, status: str = "", **data: object) -> Event:
    confirmer = str(data.pop("confirmer", ""))
    return Event(seq, "r1", T0 + at, step, what, "main", "x", 1, status, False, "", data,
                 confirmer)  # fmt: skip


def record(ended: float | None = 60.0, status: str = "succeeded") -> RunRecord:
    return RunRecord("r1", "c", "rb", "rb.yaml", "", "c.yaml", {}, False, "op", "h", 1,
                     T0, None if ended is None else T0 + ended, status, "")  # fmt: skip


EVENTS = [
    ev(1, 0.0, "", "run-start"),
    ev(2, 1.0, "go", "expand", kind="migration"),
    ev(3, 2.0, "go", "confirm", "approved", confirmer="alice (/dev/pts/1)"),
    ev(4, 2.5, "go/01-migrate-live-web", "start"),
    ev(5, 12.5, "go/01-migrate-live-web", "end", "ok", vm="web", downtime_s=0.25),
    ev(6, 13.0, "go/02-promote-dbdata", "start"),
    ev(7, 14.0, "go/02-promote-dbdata", "end", "ok", rpo_bytes=0, rpo_basis="sync, in sync"),
    ev(8, 14.0, "go/03-start-vm-db", "start"),
    ev(9, 20.0, "go/03-start-vm-db", "end", "ok", vm="db", downtime_s=18.0),
    ev(10, 21.0, "go/04-verify-web", "start"),
    ev(11, 22.0, "go/04-verify-web", "end", "ok", verified=True),
    ev(12, 23.0, "go/05-verify-db", "start"),
    ev(13, 30.0, "go/05-verify-db", "end", "ok", verified=True),
    ev(14, 31.0, "after", "skip"),
]


def test_recovery_figures() -> None:
    report = run_report(record(), EVENTS, "succeeded")
    assert report["kind"] == "migration"
    assert report["recovery"] == {
        "rto_s": 30.0,
        "rto_basis": "run start -> go/05-verify-db verified",
        "rpo_bytes": 0,
        "rpo_basis": "sync, in sync",
        "downtime_s": {"web": 0.25, "db": 18.0},
    }
    steps = {s["step"]: s for s in report["steps"]}  # type: ignore[union-attr]
    assert steps["go/01-migrate-live-web"]["duration_s"] == 10.0
    assert steps["go"]["confirmed_by"] == "alice (/dev/pts/1) (approved)"
    assert steps["after"]["status"] == "skipped"


def test_nothing_reported_is_unknown() -> None:
    events = [e for e in EVENTS if not e.data.get("verified") and "rpo_bytes" not in e.data]
    rec = run_report(record(), events, "failed")["recovery"]
    assert rec["rto_s"] is None  # type: ignore[index]
    assert rec["rto_basis"] == "no step verified a VM or service at the target"  # type: ignore[index]
    assert rec["rpo_bytes"] is None  # type: ignore[index]
    assert rec["rpo_basis"] == "no step reported it: unknown"  # type: ignore[index]


def test_no_plan_no_recovery_section() -> None:
    events = [e for e in EVENTS if e.kind != "expand"]
    assert run_report(record(), events, "succeeded")["recovery"] is None


def test_a_running_record_without_its_lock_holder_is_interrupted() -> None:
    running = record(None, "running")
    assert effective_status(running, None) == "interrupted"
    assert effective_status(running, "other") == "interrupted"
    assert effective_status(running, "r1") == "running"
    assert effective_status(record(), None) == "succeeded"
