"""A live migration (plan.execute, kind migration) of the migratable VM `web` of the sim
lab whose volume `appdata` is replicated by the DRBD driver over the emulated DRBD pair
(drorch.testing.fake_drbd): the plan allows two primaries (drbdadm net-options on both
nodes), promotes B beside A, migrates, demotes A and forbids two primaries again."""

from __future__ import annotations

from pathlib import Path

from drorch.environment import Environment
from drorch.model.types import Node
from drorch.replication.drbd.driver import DrbdReplicator
from drorch.runbook.journal import Journal
from drorch.testing.clock import FakeClock
from drorch.testing.fake_drbd import FakeDrbdPair
from tests.runbook.steps_lab import PLAN, SimLab

NET = ("drbdadm", "net-options", "--allow-two-primaries=yes", "appdata")


def test_a_live_migration_hands_a_drbd_volume_over(tmp_path: Path) -> None:
    lab = SimLab(tmp_path)
    volume = next(v for v in lab.cluster.volumes if v.name == "appdata")
    fake = FakeDrbdPair(volume, tuple(volume.paths))
    drbd_env = Environment(clock=FakeClock(), runners=dict(fake.runners))
    reps = {
        n: DrbdReplicator(volume, Node(n), drbd_env, state_dir="/var/lib/drorch")
        for n in volume.paths
    }
    for rep in reps.values():
        rep.up()
    reps["a1"].promote(1)
    for node, rep in reps.items():
        lab.env.replicators[("appdata", node)] = rep
    summary = lab.runbook(PLAN, {"to": "B"})
    events = [e for e in Journal(lab.env.state_dir).events(summary.run_id) if e.kind == "end"]
    ran = [(e.step, e.status, e.message) for e in events]
    allow = [r for r in ran if "allow" in r[0] and "two" in r[0]]
    assert allow and allow[0][1] == "ok", ran  # got past allow-two-primaries
    assert NET in fake.nodes["a1"].calls and NET in fake.nodes["b1"].calls
    assert summary.status == "succeeded", (ran, "\n".join(lab.output.lines[-30:]))
    assert fake.nodes["b1"].role == "Primary" and fake.nodes["a1"].role == "Secondary"
    assert not (fake.nodes["a1"].two_primaries or fake.nodes["b1"].two_primaries)
