"""DRBD with `fencing resource-only`, against the fake DRBD pair (drorch/testing/
fake_drbd.py) and a real quorum daemon: the link fails, the Primary's I/O is suspended
while drorch's fence-peer handler asks the witness; once the record is durable (exit 4)
I/O resumes, and the peer's copy is the one the witness calls outdated. With the witness
down the handler answers 1 and I/O stays suspended. With `fencing: dont-care` nothing
is suspended (and RPO 0 is given up)."""

from __future__ import annotations

from dataclasses import replace

from drorch.environment import Environment
from drorch.model.types import Node
from drorch.replication.drbd.driver import DrbdReplicator
from drorch.replication.drbd.fence_peer import PEER_OUTDATED, UNDECIDED, run_fence_peer
from drorch.testing.clock import FakeClock
from drorch.testing.fake_drbd import FakeDrbdNode, FakeDrbdPair
from tests.drbd.conftest import QuorumDaemon
from tests.drbd.conftest import quorum_daemon as quorum_daemon  # the fixture
from tests.drbd.test_drbd_fence_peer import cluster_for, connect


def _pair(cluster: object, fencing: str = "resource-only") -> tuple[FakeDrbdPair, DrbdReplicator]:
    volume = replace(cluster.volumes[0], fencing=fencing)  # type: ignore[attr-defined]
    fake = FakeDrbdPair(volume)
    env = Environment(clock=FakeClock(), runners=dict(fake.runners))
    a = DrbdReplicator(volume, Node("a1"), env)
    b = DrbdReplicator(volume, Node("b1"), env)
    a.up()
    b.up()
    a.promote(1)
    return fake, a


def _handler(cluster: object, seen: list[bool]):  # type: ignore[no-untyped-def]
    def fence_peer(node: FakeDrbdNode) -> int:
        seen.append(node.suspended)  # what DRBD's I/O state is while the handler runs
        env = {"DRBD_RESOURCE": "r0", "DRBD_PEER_NODE_ID": "1"}
        return run_fence_peer(cluster, env, node=node.name).exit_code  # type: ignore[arg-type]

    return fence_peer


def _suspended(a: DrbdReplicator) -> list[str]:
    return list(a.status().extra["drbd"]["suspended"])


def test_link_failure_suspends_io_until_the_witness_records(quorum_daemon: QuorumDaemon) -> None:
    cluster = cluster_for(quorum_daemon, "A")
    fake, a = _pair(cluster)
    seen: list[bool] = []
    fake.fence_peer = _handler(cluster, seen)
    with connect(quorum_daemon, "A") as holder:
        assert holder.heartbeat(1, want=True, nodes=1).granted
        assert _suspended(a) == []
        fake.runners["b1"].run(["drbdadm", "disconnect", "r0"])  # the link fails
        assert seen == [True], "I/O is suspended while the handler asks the witness"
        assert fake.nodes["a1"].fence_exits == [PEER_OUTDATED]
        assert _suspended(a) == [] and fake.nodes["a1"].peer_outdated
        with connect(quorum_daemon, "B") as b_view:
            assert b_view.heartbeat(1, want=False, nodes=1).outdated == ("r0",)


def test_link_failure_with_the_witness_down_keeps_io_suspended(
    quorum_daemon: QuorumDaemon,
) -> None:
    live = cluster_for(quorum_daemon, "A")
    assert live.witness is not None
    down = replace(live, witness=replace(live.witness, address="127.0.0.1:1"))
    fake, a = _pair(down)
    seen: list[bool] = []
    fake.fence_peer = _handler(down, seen)
    fake.runners["b1"].run(["drbdadm", "disconnect", "r0"])
    assert fake.nodes["a1"].fence_exits == [UNDECIDED]
    assert _suspended(a) == ["fencing"], "nothing is acknowledged that the peer may lack"
    assert fake.run_fence_peer(fake.nodes["a1"]) == UNDECIDED  # retried: still down
    assert _suspended(a) == ["fencing"] and not fake.nodes["a1"].peer_outdated


def test_dont_care_never_suspends(quorum_daemon: QuorumDaemon) -> None:
    cluster = cluster_for(quorum_daemon, "A")
    fake, a = _pair(cluster, fencing="dont-care")
    seen: list[bool] = []
    fake.fence_peer = _handler(cluster, seen)
    fake.runners["b1"].run(["drbdadm", "disconnect", "r0"])
    assert seen == [] and _suspended(a) == []
