"""The step families on the simulated lab (lab/sim.yaml: sim hypervisor + sim
replication, FakeClock): plan.execute really moves the cluster there and back, dry runs
change nothing, a crashed guest fails vm.verify_alive, a non-converging migration falls
back to a cold move, and promotions keep their safety checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from drorch.cli.main import cli
from drorch.replication.sim import SimReplicator
from drorch.runbook.journal import Journal
from drorch.runbook.steps.base import StepFailed
from tests.runbook.steps_lab import PLAN, RecordingProgress, SimLab

AT_A = {
    ("drorch-db", "A"): "running",
    ("drorch-web", "A"): "running",
    ("drorch-db", "B"): "undefined",
    ("drorch-web", "B"): "undefined",
}


@pytest.fixture
def lab(tmp_path: Path) -> SimLab:
    return SimLab(tmp_path)


def test_plan_execute_moves_the_cluster_to_b_and_back(lab: SimLab) -> None:
    assert lab.vms() == AT_A
    assert set(lab.roles().items()) == {
        (("appdata", "A"), "primary"),
        (("dbdata", "A"), "primary"),
        (("appdata", "B"), "secondary"),
        (("dbdata", "B"), "secondary"),
    }
    summary = lab.runbook(PLAN, {"to": "B"})
    assert summary.status == "succeeded", "\n".join(lab.output.lines)
    assert lab.vms() == {
        ("drorch-db", "A"): "shutoff",
        ("drorch-web", "A"): "undefined",
        ("drorch-db", "B"): "running",
        ("drorch-web", "B"): "running",
    }
    assert lab.roles() == {
        ("appdata", "A"): "secondary",
        ("dbdata", "A"): "secondary",
        ("appdata", "B"): "primary",
        ("dbdata", "B"): "primary",
    }
    assert "  changed: migrated web A -> B, downtime" in "\n".join(lab.output.lines)
    bar = [u for u in lab.output.updates if "migrate-live-web" in u[0]]
    assert bar and all(u[3].startswith("iter ") for u in bar)  # `drorch vm migrate`'s line
    assert bar[-1][1] == bar[-1][2] == 128 * 2**20
    assert lab.facts == {} and Journal(lab.env.state_dir).runs()[0].status == "succeeded"
    back = lab.runbook(PLAN, {"to": "A"})
    assert back.status == "succeeded", "\n".join(lab.output.lines)
    assert lab.vms()[("drorch-web", "A")] == "running"
    assert lab.vms()[("drorch-db", "A")] == "running"
    assert lab.vms()[("drorch-db", "B")] == "shutoff"
    assert {k: v for k, v in lab.roles().items() if v == "primary"} == {
        ("appdata", "A"): "primary",
        ("dbdata", "A"): "primary",
    }
    assert lab.world()["replication/appdata.json"]["epoch"] == 2  # type: ignore[index]


def test_the_report_of_a_plan_run_has_rto_rpo_and_downtime(lab: SimLab) -> None:
    from drorch.runbook.report import recovery, timeline

    summary = lab.runbook(PLAN, {"to": "B"})
    journal = Journal(lab.env.state_dir)
    record = journal.run(summary.run_id)
    assert record is not None
    steps = timeline(journal.events(summary.run_id))
    got = recovery(record, steps)
    assert got["rpo_bytes"] == 0
    assert got["rpo_basis"] == "dbdata: connected and in sync with the peer at the switch"
    last = max(s.ended_at or 0.0 for s in steps)
    assert got["rto_s"] == round(last - record.started_at, 3) and got["rto_s"] > 0
    assert "verified" in str(got["rto_basis"])
    downtime = got["downtime_s"]
    assert isinstance(downtime, dict) and set(downtime) == {"web", "db"}
    assert 0 < downtime["web"] < 0.3  # the live pause, within the 300 ms budget
    assert downtime["db"] > 0  # from its shutdown at A until verified at B
    # the live pause is the simulator's model, and the report says so
    assert got["simulated"] == (
        "yes: driver sim, no guest moved; times and downtime are the simulator's model"
    )


def test_dry_run_of_the_plan_changes_nothing_and_lists_its_checks(lab: SimLab) -> None:
    lab.vms()  # the sim initialises its files on first look
    before = lab.world()
    summary = lab.runbook(PLAN, {"to": "B"}, dry_run=True)
    assert summary.status == "dry-run", "\n".join(lab.output.lines)
    assert lab.world() == before
    events = [e for e in Journal(lab.env.state_dir).events(summary.run_id) if e.kind == "end"]
    children = [e for e in events if e.step.startswith("go/")]
    assert len(children) == 21
    no_checks = [e.step for e in children if not e.data.get("checked")]
    assert no_checks == [], no_checks


def test_verify_alive_fails_for_a_crashed_guest(lab: SimLab) -> None:
    lab.run("vm.verify_alive", target="web", site="A")
    done = CliRunner().invoke(cli, ["sim", "crash-vm", "web", "-c", str(lab.config)])
    assert done.exit_code == 0, done.output
    with pytest.raises(StepFailed) as failed:
        lab.run("vm.verify_alive", target="web", site="A")
    assert failed.value.code == "vm-not-alive"
    assert failed.value.message == "web is crashed at A, not running"
    with pytest.raises(StepFailed) as failed:
        lab.run("monitor.verify", target="web/web-alive", site="A")
    assert failed.value.code == "monitor-failed"
    assert "drorch-web is crashed at A" in failed.value.message


def test_a_migration_that_does_not_converge_falls_back_to_a_cold_move(tmp_path: Path) -> None:
    slow = {"bandwidth_mibps: 1000": "bandwidth_mibps: 10"}  # 128 MiB take 12.8 s
    lab = SimLab(tmp_path, slow)
    lab.run("replication.allow_two_primaries", target="appdata")
    lab.run("replication.promote", target="appdata", site="B", second_primary=True, epoch=1)
    step, args = lab.bind("vm.migrate_live", {"target": "web", "site": "B", "deadline": 5.0})
    bar = RecordingProgress()
    with pytest.raises(StepFailed) as failed:
        step.run(lab.ctx(progress=bar), args)
    assert failed.value.code == "migration-failed"
    assert bar.updates and bar.updates[-1][0] < bar.updates[-1][1]  # stopped short of done
    assert bar.updates[0][2].startswith("iter 1  sent ")
    assert lab.facts["migration_converged"] is False
    assert lab.vms()[("drorch-web", "A")] == "running"  # it stays at the source
    result = lab.run("vm.migrate_live", target="web", site="B", deadline=5.0, fallback="cold")
    assert result.changed and "live migration did not converge; moved cold" in result.message
    assert lab.facts["migration_converged"] is False
    assert lab.vms()[("drorch-web", "B")] == "running"
    assert lab.vms()[("drorch-web", "A")] in ("shutoff", "undefined")
    assert lab.roles()[("appdata", "B")] == "primary"
    assert lab.roles()[("appdata", "A")] == "secondary"
    assert "demoted appdata on a1" in result.checked


def test_a_live_move_onto_a_secondary_is_refused_or_moves_cold(lab: SimLab) -> None:
    """No hand-over open at B (appdata secondary there): the live migration is refused
    before anything moves; with fallback cold the step moves the VM cold instead."""
    with pytest.raises(StepFailed) as failed:
        lab.run("vm.migrate_live", target="web", site="B")
    assert failed.value.code == "migration-refused"
    assert "volume-not-primary: volume appdata is secondary at B" in failed.value.message
    assert lab.vms()[("drorch-web", "A")] == "running"
    result = lab.run("vm.migrate_live", target="web", site="B", fallback="cold")
    assert result.message == (
        "web: its volumes are not open at B for a live hand-over; moved cold to B"
    )
    assert result.data["refused"] == ["volume-not-primary"]
    assert lab.vms()[("drorch-web", "B")] == "running"
    assert lab.roles()[("appdata", "B")] == "primary"


def _sim(lab: SimLab, volume: str, node: str) -> SimReplicator:
    rep = lab.env.replicators[(volume, node)]
    assert isinstance(rep, SimReplicator)
    return rep


def test_promote_refuses_an_outdated_replica_without_data_loss_acknowledged(lab: SimLab) -> None:
    lab.run("vm.shutdown", target="db", site="A")
    lab.run("replication.demote", target="dbdata", site="A")
    _sim(lab, "dbdata", "b1").outdate()
    for call in (lab.check, lab.run):
        with pytest.raises(StepFailed) as failed:
            call("replication.promote", target="dbdata", site="B", epoch=1)
        assert failed.value.code == "promote-refused"
        assert "is Outdated, not UpToDate" in failed.value.message
    assert lab.roles()[("dbdata", "B")] == "secondary"
    forced = lab.run("replication.promote", target="dbdata", site="B", epoch=1, force=True)
    assert "FORCED past" in forced.message
    assert "rpo_bytes" not in forced.data  # promoted a stale copy: unknown, never 0
    assert lab.roles()[("dbdata", "B")] == "primary"


def test_promote_refuses_a_stale_epoch(lab: SimLab) -> None:
    lab.run("vm.shutdown", target="db", site="A")
    lab.run("replication.demote", target="dbdata", site="A")
    lab.run("replication.promote", target="dbdata", site="B", epoch=5)
    lab.run("replication.demote", target="dbdata", site="B")
    with pytest.raises(StepFailed) as failed:
        lab.run("replication.promote", target="dbdata", site="A", epoch=4)
    assert failed.value.code == "stale-epoch"
    assert lab.roles()[("dbdata", "A")] == "secondary"


def test_promote_refused_while_the_simulated_witness_is_down_for_a_failover(lab: SimLab) -> None:
    lab.run("vm.shutdown", target="db", site="A")
    lab.run("replication.demote", target="dbdata", site="A")
    (lab.dir / ".drorch-state" / "sim-partition").write_text("1\n")
    (lab.dir / ".drorch-state" / "sim-witness.down").write_text("1\n")
    with pytest.raises(StepFailed) as failed:
        lab.run("replication.promote", target="dbdata", site="B", epoch=1)
    assert failed.value.code == "promote-refused"
    assert "simulated witness is down" in failed.value.message


def test_demote_refused_under_a_running_guest(lab: SimLab) -> None:
    with pytest.raises(StepFailed) as failed:
        lab.run("replication.demote", target="dbdata", site="A")
    assert failed.value.code == "volume-in-use"
    assert lab.roles()[("dbdata", "A")] == "primary"
