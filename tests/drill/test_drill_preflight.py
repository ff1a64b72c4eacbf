"""The preflight guards on the simulated lab: each refusal is recorded with its reason,
and a drill failing midway rolls back to where it started."""

from __future__ import annotations

from pathlib import Path

import pytest

import drorch.testing.ledger_steps  # noqa: F401  (registers ledger.*)
from drorch.drill.history import History
from drorch.drill.preflight import maintenance_file, preflight
from drorch.drill.runner import run_drill
from drorch.runbook.gates import YesConfirmer
from drorch.runbook.journal import RUNNING, Journal, RunRecord
from drorch.runbook.load import parse_runbook_text
from drorch.runbook.lock import RunLock
from drorch.runbook.setup import RecordingOutput, RunOptions
from drorch.testing.ledger_steps import lines
from drorch.virt.sim_world import break_replication, power_off
from tests.drill.simlab import SimLab

LEDGER_RB = """\
name: ledger-drill
params:
  to: {type: str}
steps:
  - {id: over, action: ledger.add, with: {ledger: LEDGER, token: "over-${params.to}"},
     rollback: undo}
  - {id: flaky, action: ledger.flaky, with: {ledger: LEDGER, token: t, failures: FAILS},
     on_failure: rollback}
  - {id: back, action: ledger.add, with: {ledger: LEDGER, token: back}}
"""


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimLab:
    monkeypatch.setenv("DRORCH_STATE_DIR", str(tmp_path / "state"))
    return SimLab(tmp_path)


def options() -> RunOptions:
    return RunOptions(confirmer=YesConfirmer("drill-test"), output=RecordingOutput(),
                      user="drill-test")  # fmt: skip


def ledger_runbook(tmp: Path, fails: int) -> object:
    text = LEDGER_RB.replace("LEDGER", str(tmp / "ledger")).replace("FAILS", str(fails))
    return parse_runbook_text(text, "ledger-drill.yaml")


def test_a_healthy_cluster_passes_every_guard(lab: SimLab) -> None:
    assert preflight(lab.cluster, lab.env()) == []


def test_replication_not_in_sync_skips_the_drill_and_records_why(
    lab: SimLab, tmp_path: Path
) -> None:
    env = lab.env()
    break_replication(lab.cluster, env, "appdata")
    out = run_drill(lab.cluster, lab.drill("live"), lab.env(), options(),
                    runbook=ledger_runbook(tmp_path, 0))  # type: ignore[arg-type]  # fmt: skip
    assert out.result == "skipped"
    assert not (tmp_path / "ledger").exists()  # nothing ran
    (row,) = History(lab.state).rows()
    assert row.result == "skipped" and row.drill == "weekly-live" and row.run_id == ""
    codes = {r.code for r in row.reasons}
    assert "not-in-sync" in codes and "cluster-unhealthy" in codes
    why = next(r.message for r in row.reasons if r.code == "not-in-sync")
    assert why.startswith("volume appdata at A (a1) is UpToDate/StandAlone")


def test_maintenance_mode_and_a_lost_site_refuse(lab: SimLab) -> None:
    env = lab.env()
    maintenance_file(lab.state, lab.cluster).parent.mkdir(parents=True, exist_ok=True)
    maintenance_file(lab.state, lab.cluster).write_text("on\n")
    power_off(lab.cluster, env, "B")
    codes = [r.code for r in preflight(lab.cluster, lab.env())]
    assert codes[0] == "maintenance-mode"
    assert "cluster-unhealthy" in codes and "not-in-sync" in codes


def test_a_run_in_progress_or_interrupted_refuses(lab: SimLab) -> None:
    lock = RunLock(lab.state, lab.cluster.name)
    lock.acquire("20261203T000000Z-beef")
    try:
        reasons = preflight(lab.cluster, lab.env())
    finally:
        lock.release()
    assert [r.code for r in reasons] == ["run-in-progress"]
    assert "run 20261203T000000Z-beef" in reasons[0].message
    journal = Journal(lab.state)
    journal.create_run(RunRecord(
        "20261203T010000Z-cafe", lab.cluster.name, "hurricane-planned-migration", "h.yaml",
        "", "", {}, False, "op", "host", 1, 1.0, None, RUNNING, "",
    ))  # fmt: skip
    journal.close()
    reasons = preflight(lab.cluster, lab.env())
    assert [r.code for r in reasons] == ["hurricane-migration-pending"]
    assert "`drorch runbook resume 20261203T010000Z-cafe`" in reasons[0].message


def test_a_drill_that_fails_midway_rolls_back_and_is_recorded(lab: SimLab, tmp_path: Path) -> None:
    out = run_drill(lab.cluster, lab.drill("live"), lab.env(), options(),
                    runbook=ledger_runbook(tmp_path, 5))  # type: ignore[arg-type]  # fmt: skip
    assert out.result == "rolled-back"
    assert lines(tmp_path / "ledger") == ["add over-B", "try t", "remove over-B"]
    (row,) = History(lab.state).rows()
    assert row.result == "rolled-back" and row.run_id == out.run_id
    assert row.reasons[0].code == "flaky"
    assert [s["step"] for s in row.data["steps"]][:2] == ["over", "flaky"]  # type: ignore[index]


def test_a_drill_that_succeeds_is_recorded_with_its_run(lab: SimLab, tmp_path: Path) -> None:
    out = run_drill(lab.cluster, lab.drill("live"), lab.env(), options(),
                    runbook=ledger_runbook(tmp_path, 0), scheduled_for=1.0e9)  # type: ignore[arg-type]  # fmt: skip
    assert out.result == "succeeded"
    assert lines(tmp_path / "ledger") == ["add over-B", "try t", "add back"]
    row = History(lab.state).get(out.run_id)
    assert row is not None and row.result == "succeeded" and row.scheduled_for == 1.0e9
    assert row.total_s is not None and row.rto_s is None  # ledger steps verify nothing


def test_a_drill_nobody_can_confirm_is_refused_and_not_recorded(lab: SimLab) -> None:
    from drorch.drill.runner import drill_runbook

    opts = RunOptions(confirmer=None, output=RecordingOutput(), user="drill-test")
    out = run_drill(lab.cluster, lab.drill("cold"), lab.env(), opts,
                    runbook=drill_runbook(lab.drill("cold")))  # fmt: skip
    assert out.result == "skipped" and out.reasons[0].code == "needs-confirmation"
    assert History(lab.state).rows() == []
