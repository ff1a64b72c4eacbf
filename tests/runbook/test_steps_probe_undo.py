"""Each step type's probe is false before its run and true after it (resume relies on
that), and its undo puts the world back (rollback relies on that): on the sim lab."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from drorch.runbook.steps.base import StepFailed, StepResult
from drorch.virt.sim_world import break_replication, power_off
from tests.runbook.steps_lab import SimLab


@pytest.fixture
def lab(tmp_path: Path) -> SimLab:
    lab = SimLab(tmp_path)
    lab.vms()
    return lab


def _cold_db(lab: SimLab) -> None:
    """db shut down at A and its volume switched to B, as a plan does before start."""
    lab.run("vm.shutdown", target="db", site="A")
    lab.run("replication.demote", target="dbdata", site="A")
    lab.run("replication.promote", target="dbdata", site="B", epoch=1)


def _probe_flips(lab: SimLab, name: str, **args: object) -> StepResult:
    assert lab.probe(name, **args) is False, f"{name} probe true before its run"
    result = lab.run(name, **args)
    assert result.changed, result.message
    assert lab.probe(name, **args) is True, f"{name} probe false after its run"
    again = lab.run(name, **args)  # running it again after it took effect changes nothing
    assert not again.changed, again.message
    return result


def test_replication_probes(lab: SimLab) -> None:
    lab.run("vm.shutdown", target="db", site="A")
    _probe_flips(lab, "replication.demote", target="dbdata", site="A")
    _probe_flips(lab, "replication.promote", target="dbdata", site="B", epoch=1)
    _probe_flips(lab, "replication.allow_two_primaries", target="appdata")
    _probe_flips(lab, "replication.forbid_two_primaries", target="appdata")
    _probe_flips(lab, "replication.set_mode", volumes=("appdata",), mode="async")


def test_vm_probes(lab: SimLab) -> None:
    _cold_db(lab)
    _probe_flips(lab, "vm.define", target="db", site="B", from_site="A")
    _probe_flips(lab, "vm.start", target="db", site="B")
    _probe_flips(lab, "vm.shutdown", target="db", site="B")
    lab.run("replication.allow_two_primaries", target="appdata")
    lab.run("replication.promote", target="appdata", site="B", second_primary=True, epoch=1)
    result = _probe_flips(lab, "vm.migrate_live", target="web", site="B", from_site="A")
    assert lab.facts["migration_converged"] is True
    assert isinstance(result.data.get("downtime_s"), float)


def test_cold_failover_probe_and_effect(lab: SimLab) -> None:
    result = _probe_flips(lab, "vm.cold_failover", target="db", site="B")
    assert lab.vms()[("drorch-db", "B")] == "running"
    assert lab.roles()[("dbdata", "B")] == "primary"
    assert lab.roles()[("dbdata", "A")] == "secondary"
    assert result.checked[0] == "db shut down at A"


def test_service_and_quorum_probes(lab: SimLab) -> None:
    _probe_flips(lab, "service.stop", target="shop-frontend", site="A")
    _probe_flips(lab, "service.start", target="shop-frontend", site="B")
    _probe_flips(lab, "service.relocate", target="postgres-proxy", site="B", from_site="A")
    lab.run("check.quorum", site="A")
    _probe_flips(lab, "quorum.release", to="B")
    lab.run("check.quorum", site="B")
    with pytest.raises(Exception, match="does not hold quorum"):
        lab.run("check.quorum", site="A")


def _undo(lab: SimLab, name: str, **args: object) -> None:
    step, bound = lab.bind(name, args)
    before = lab.observed()
    result = lab.run(name, **args)
    assert lab.observed() != before, f"{name} changed nothing"
    assert step.undo is not None
    lab.run(step.undo, **step.undo_args(bound, result))
    after = lab.observed()
    assert after == before, f"{name} then {step.undo} did not put things back"


def test_undo_round_trips(lab: SimLab) -> None:
    _undo(lab, "replication.allow_two_primaries", target="appdata")
    _undo(lab, "replication.set_mode", volumes=("appdata", "dbdata"), mode="async")
    lab.run("vm.shutdown", target="db", site="A")
    _undo(lab, "replication.demote", target="dbdata", site="A")
    lab.run("replication.demote", target="dbdata", site="A")
    _undo(lab, "replication.promote", target="dbdata", site="B", epoch=3)
    lab.run("replication.promote", target="dbdata", site="A", epoch=4)
    _undo(lab, "vm.start", target="db", site="A")
    _undo(lab, "service.stop", target="shop-frontend", site="A")
    _undo(lab, "quorum.release", to="B")


def test_a_failed_step_rolls_back_the_steps_before_it(lab: SimLab) -> None:
    text = """\
name: rb
steps:
  - {id: sync, action: replication.set_mode, with: {mode: async}, rollback: undo}
  - {id: stop, action: service.stop, with: {target: shop-frontend, site: A}, rollback: undo}
  - id: boom
    action: check.replication_in_sync
    with: {volumes: [nosuch]}
    on_failure: rollback
"""
    before = lab.observed()
    summary = lab.runbook(text)
    assert summary.status == "rolled-back", "\n".join(lab.output.lines)
    assert summary.failed_code == "unknown-volume"
    assert "  changed: shop-frontend: start 'true' on a1: exit 0" in lab.output.lines
    assert "  changed: set appdata, dbdata to sync" in lab.output.lines
    assert lab.observed() == before


def _failed_over_dbdata(lab: SimLab, *, a_wrote_alone: bool) -> None:
    """dbdata promoted at B while cut off from A (a failover); A maybe wrote alone too."""
    lab.run("vm.shutdown", target="db", site="A")
    break_replication(lab.cluster, lab.env, "dbdata")  # both StandAlone
    a = lab.env.replicators[("dbdata", "a1")]
    if a_wrote_alone:
        a.write(4096)  # type: ignore[attr-defined]
    lab.run("replication.demote", target="dbdata", site="A")
    lab.run("replication.promote", target="dbdata", site="B", epoch=1, force=True)


def test_reprotect_makes_the_old_site_a_secondary_in_sync(lab: SimLab) -> None:
    _failed_over_dbdata(lab, a_wrote_alone=False)
    args = {"site": "A", "volumes": ("dbdata",)}
    assert lab.probe("replication.reprotect", **args) is False
    result = lab.run("replication.reprotect", **args)
    assert result.changed and result.checked[0].startswith("dbdata@a1: secondary UpToDate")
    assert lab.probe("replication.reprotect", **args) is True
    assert lab.roles()[("dbdata", "B")] == "primary"


def test_reprotect_after_a_split_brain_needs_the_data_loss_acknowledgement(lab: SimLab) -> None:
    _failed_over_dbdata(lab, a_wrote_alone=True)
    args = {"site": "A", "volumes": ("dbdata",)}
    with pytest.raises(StepFailed) as failed:
        lab.run("replication.reprotect", **args)
    assert failed.value.code == "split-brain"
    assert lab.probe("replication.reprotect", **args) is False
    lab.run("replication.reprotect", force=True, **args)  # discards A's lone write
    assert lab.probe("replication.reprotect", **args) is True
    lab.run("check.replication_in_sync", volumes=("dbdata",))
    state = lab.world()["replication/dbdata.json"]
    assert state["replicas"]["a1"]["gen"] == state["replicas"]["b1"]["gen"]  # type: ignore[index]


def test_quorum_acquire_only_once_the_holder_lease_lapsed(lab: SimLab) -> None:
    lab.run("quorum.release", to="B")
    with pytest.raises(StepFailed) as failed:
        lab.run("quorum.acquire", site="A")
    assert failed.value.code == "quorum-held-elsewhere"
    lab.clock.advance(time.time() - lab.clock.now())  # sim markers carry wall-clock times
    power_off(lab.cluster, lab.env, "B")
    since = float((lab.dir / ".drorch-state" / "sim-B.down").read_text())
    lab.clock.advance(max(0.0, since - lab.clock.now()) + 10)  # lease_timeout 10s
    assert lab.probe("quorum.acquire", site="A") is False
    assert lab.run("quorum.acquire", site="A").message == "A holds quorum (epoch 2)"
    assert lab.probe("quorum.acquire", site="A") is True
