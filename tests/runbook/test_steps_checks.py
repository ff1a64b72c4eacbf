"""The check family on the sim lab: each passes on a healthy cluster with what it looked
at, and fails with its code once `drorch sim` breaks what it checks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from drorch.runbook.steps.base import StepFailed
from drorch.virt.sim_world import break_replication, crash_vm, power_off
from tests.runbook.steps_lab import SimLab


@pytest.fixture
def lab(tmp_path: Path) -> SimLab:
    lab = SimLab(tmp_path)
    lab.clock.advance(time.time() - lab.clock.now())  # sim markers carry wall-clock times
    lab.vms()
    return lab


def _fails(lab: SimLab, name: str, **args: object) -> StepFailed:
    for call in (lab.check, lab.run):  # check mode finds what the run finds
        with pytest.raises(StepFailed) as failed:
            call(name, **args)
    return failed.value


def test_sites_reachable(lab: SimLab) -> None:
    ok = lab.run("check.sites_reachable")
    assert ok.checked == ("site A: reachable", "site B: reachable")
    power_off(lab.cluster, lab.env, "B")
    failed = _fails(lab, "check.sites_reachable")
    assert failed.code == "site-unreachable"
    assert failed.message.startswith("site(s) B do not answer")
    assert lab.run("check.sites_reachable", sites=("A",)).checked == ("site A: reachable",)


def test_replication_in_sync(lab: SimLab) -> None:
    ok = lab.run("check.replication_in_sync")
    assert len(ok.checked) == 4 and ok.message == "4 replica(s) in sync"
    break_replication(lab.cluster, lab.env, "appdata")
    failed = _fails(lab, "check.replication_in_sync", site="B")
    assert failed.code == "not-in-sync"
    assert "appdata@b1: secondary UpToDate/DUnknown StandAlone" in failed.message
    assert "dbdata" not in failed.message
    lab.run("check.replication_in_sync", volumes=("dbdata",))
    stuck = _fails(lab, "replication.wait_in_sync", target="appdata", site="B")
    assert stuck.code == "not-in-sync" and "cannot catch up" in stuck.message


def test_quorum(lab: SimLab) -> None:
    assert lab.run("check.quorum", site="A").checked == ("simulated witness: holder A, epoch 0",)
    assert _fails(lab, "check.quorum", site="B").code == "no-quorum"
    (lab.dir / ".drorch-state" / "sim-witness.down").write_text("1\n")
    assert _fails(lab, "check.quorum", site="A").code == "witness-unreachable"


def test_fenced_only_after_the_lease_and_switch_delay(lab: SimLab) -> None:
    # A answers: it is not lost, and no wait makes it so (refused at once, not retried)
    assert _fails(lab, "check.fenced", target="A", site="B").code == "lost-site-answers"
    assert lab.facts["fenced"] is False
    power_off(lab.cluster, lab.env, "A")
    since = float((lab.dir / ".drorch-state" / "sim-A.down").read_text())
    lab.clock.advance(max(0.0, since - lab.clock.now()))  # the fake clock at the power-off
    lab.clock.advance(10)  # lease_timeout 10s + switch_delay 5s have not both passed
    assert _fails(lab, "check.fenced", target="A", site="B").code == "not-fenced"
    lab.clock.advance(6)
    ok = lab.run("check.fenced", target="A", site="B")
    assert lab.facts["fenced"] is True
    assert ok.checked[1].startswith("observed: simulated: powered off 16s ago")


def test_monitors(lab: SimLab) -> None:
    ok = lab.run("check.monitors", site="A")
    assert ok.message == "2 monitor(s) pass at A"
    crash_vm(lab.cluster, lab.env, "db")
    with pytest.raises(StepFailed) as got:
        lab.run("check.monitors", site="A")
    assert got.value.code == "monitor-failed"
    assert "drorch-db is crashed at A" in got.value.message
    assert lab.run("check.monitors", site="A", vms=("web",)).message == "1 monitor(s) pass at A"
