"""The replication family on DRBD (the driver over drbdadm/drbdsetup through each node's
runner, against the emulated pair in drorch.testing.fake_drbd): a switch A -> B with the
plan's epoch, the in-sync checks, two primaries and sync <-> async (net-options), and the witness
check a cluster with a (here unreachable) witness makes before any promotion."""

from __future__ import annotations

import dataclasses

import pytest

from drorch.environment import Environment
from drorch.model.types import Cluster, Node, Witness
from drorch.replication.base import ReplicationError
from drorch.replication.drbd.driver import DrbdReplicator
from drorch.runbook.steps.base import (
    StepContext,
    StepFailed,
    StepResult,
    bind_args,
    load_step_types,
)
from drorch.testing.clock import FakeClock
from drorch.testing.fake_drbd import FakeDrbdPair
from tests.drbd.clusters import two_site_cluster


def _world(cluster: Cluster) -> tuple[StepContext, FakeDrbdPair]:
    volume = cluster.volumes[0]
    fake = FakeDrbdPair(volume)
    env = Environment(clock=FakeClock(), runners=dict(fake.runners))
    for node in ("a1", "b1"):
        env.replicators[(volume.name, node)] = DrbdReplicator(
            volume, Node(node), env, state_dir="/var/lib/drorch"
        )
    a, b = env.replicators[(volume.name, "a1")], env.replicators[(volume.name, "b1")]
    a.up()
    b.up()
    a.promote(1)
    a.connect()
    b.connect()
    return StepContext(env, cluster), fake


def _run(ctx: StepContext, name: str, check: bool = False, **raw: object) -> StepResult:
    step = load_step_types()[name]
    args, problems = bind_args(step.params, raw)
    assert not problems
    return step.check(ctx, args) if check else step.run(ctx, args)


def test_a_switch_to_b_on_drbd() -> None:
    ctx, fake = _world(two_site_cluster())
    assert _run(ctx, "check.replication_in_sync").message == "2 replica(s) in sync"
    _run(ctx, "replication.wait_in_sync", target="r0", site="B")
    assert _run(ctx, "replication.demote", target="r0", site="A").changed
    done = _run(ctx, "replication.promote", target="r0", site="B", epoch=2)
    assert done.message == "promoted r0 on b1 at epoch 2"
    assert done.data["rpo_bytes"] == 0
    assert fake.nodes["b1"].role == "Primary" and fake.nodes["a1"].role == "Secondary"
    assert fake.nodes["b1"].files  # the epoch file DRBD's driver keeps on the node
    _run(ctx, "replication.demote", target="r0", site="B")
    with pytest.raises(StepFailed) as stale:  # B promoted at 2: A's own file still says 1
        _run(ctx, "replication.promote", target="r0", site="A", epoch=1)
    assert stale.value.code == "stale-epoch"
    assert stale.value.message.startswith("r0@a1: epoch 1 is older than epoch 2 already seen")
    assert "a promotion needs an epoch greater than 2" in stale.value.message
    with pytest.raises(StepFailed) as equal:  # b1 recorded 2 itself: equal is reuse
        _run(ctx, "replication.promote", target="r0", site="B", epoch=2)
    assert equal.value.code == "stale-epoch"
    assert "a promotion needs an epoch greater than 2" in equal.value.message
    assert fake.nodes["b1"].role == "Secondary"
    assert _run(ctx, "replication.promote", target="r0", site="B", epoch=3).changed


def test_a_live_hand_over_on_drbd_allows_two_primaries_then_forbids_them() -> None:
    ctx, fake = _world(two_site_cluster())
    a, b = fake.nodes["a1"], fake.nodes["b1"]
    assert _run(ctx, "replication.allow_two_primaries", check=True, target="r0").changed
    assert _run(ctx, "replication.allow_two_primaries", target="r0").changed
    assert a.two_primaries and b.two_primaries  # drbdadm net-options on both nodes
    assert ("drbdadm", "net-options", "--allow-two-primaries=yes", "r0") in a.calls
    assert not _run(ctx, "replication.allow_two_primaries", target="r0").changed
    done = _run(ctx, "replication.promote", target="r0", site="B", epoch=2, second_primary=True)
    assert done.changed, done.message
    assert a.role == b.role == "Primary"
    with pytest.raises(StepFailed) as failed:
        _run(ctx, "replication.forbid_two_primaries", target="r0")
    assert failed.value.code == "both-primary"
    assert a.two_primaries and b.two_primaries
    _run(ctx, "replication.demote", target="r0", site="A")
    assert _run(ctx, "replication.forbid_two_primaries", target="r0").changed
    assert not (a.two_primaries or b.two_primaries)
    rep_a = ctx.env.replicators[("r0", "a1")]
    with pytest.raises(ReplicationError, match="demote it first"):
        rep_a.promote(3)  # two primaries forbidden again: DRBD's policy refuses


def test_set_mode_on_drbd_switches_the_protocol_and_two_primaries_need_sync() -> None:
    ctx, fake = _world(two_site_cluster())
    assert not _run(ctx, "replication.set_mode", mode="sync").changed  # already sync
    assert _run(ctx, "replication.set_mode", mode="async").changed
    assert fake.nodes["a1"].protocol == fake.nodes["b1"].protocol == "A"
    assert ctx.env.replicators[("r0", "b1")].status().mode == "async"
    for check in (True, False):
        with pytest.raises(StepFailed) as failed:
            _run(ctx, "replication.allow_two_primaries", check=check, target="r0")
        assert failed.value.code == ("not-sync" if check else "two-primaries-refused")
    assert not fake.nodes["a1"].two_primaries
    assert _run(ctx, "replication.set_mode", mode="sync").changed
    assert fake.nodes["a1"].protocol == "C"
    _run(ctx, "replication.allow_two_primaries", target="r0")
    with pytest.raises(StepFailed) as failed:  # async while two primaries are allowed
        _run(ctx, "replication.set_mode", mode="async")
    assert failed.value.code == "mode-change-failed"
    assert "forbid them before async" in failed.value.message
    assert fake.nodes["a1"].protocol == "C"


def test_two_primaries_are_refused_while_disconnected() -> None:
    ctx, fake = _world(two_site_cluster())
    ctx.env.replicators[("r0", "b1")].disconnect()
    with pytest.raises(StepFailed) as failed:
        _run(ctx, "replication.allow_two_primaries", target="r0")
    assert failed.value.code == "two-primaries-refused"
    assert "two primaries need the peer connected" in failed.value.message
    assert not fake.nodes["a1"].two_primaries


def test_the_fake_refuses_two_primaries_without_protocol_c_like_drbd() -> None:
    _ctx, fake = _world(two_site_cluster())
    runner = fake.runners["a1"]
    assert runner.run(["drbdadm", "net-options", "--protocol=A", "r0"]).ok
    refused = runner.run(["drbdadm", "net-options", "--allow-two-primaries=yes", "r0"])
    assert refused.returncode == 10 and "Protocol C required" in refused.stderr
    assert not fake.nodes["a1"].two_primaries


def test_promotion_asks_the_witness_first_and_refuses_when_it_cannot() -> None:
    witness = Witness(
        "127.0.0.1:9",
        "sha256:" + "00" * 32,
        cert="/nonexistent/site.crt",
        key="/nonexistent/site.key",
    )
    ctx, fake = _world(dataclasses.replace(two_site_cluster(), witness=witness))
    _run(ctx, "replication.demote", target="r0", site="A")
    for check in (True, False):
        with pytest.raises(StepFailed) as failed:
            _run(ctx, "replication.promote", check=check, target="r0", site="B", epoch=2)
        assert failed.value.code == "promote-refused"
        assert "cannot ask the witness whether r0 at B is current" in failed.value.message
    assert fake.nodes["b1"].role == "Secondary"
    ctx.force = ctx.accept_data_loss = True
    forced = _run(ctx, "replication.promote", target="r0", site="B", epoch=2)
    assert "FORCED past: cannot ask the witness" in forced.message
    assert fake.nodes["b1"].role == "Primary"
    # forced past the witness, but the peer itself confirmed it had nothing newer
    assert forced.data["rpo_bytes"] == 0
    assert forced.data["rpo_basis"] == "r0: connected and in sync with the peer at the switch"
