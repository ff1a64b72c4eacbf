"""`fencing: resource-only` on real in-process daemons (real sockets, files, NBD):
a sync primary that loses its peer freezes, acknowledges nothing, and resumes only once
the peer is recorded Outdated (operator, planned disconnect, the peer's return and
resync). Also: a stale primary acknowledges nothing (issue 10 §1.6); a pulled-ahead
secondary knows it is Outdated and an interrupted SyncTarget says how much is left
(§1.7). The witness-driven hook runs in test_pyrepl_fencing_witness.py."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from drorch.replication.base import ReplicationError, Role, UnsafeOperation
from tests.pyrepl.conftest import REGION, Cluster, Side, connected, wait_until
from tests.pyrepl.nbd_client import NbdError

EIO = 5


def block(i: int, size: int = 4096) -> bytes:
    return (i.to_bytes(4, "big") * (size // 4))[:size]


class Writer:
    """Writes numbered blocks on a thread and records which were acknowledged."""

    def __init__(self, side: Side, blocks: range, size: int = 4096) -> None:
        self.acked: list[int] = []
        self.errors: list[int] = []
        self.size = size
        self.thread = threading.Thread(target=self._run, args=(side, blocks), daemon=True)
        self.thread.start()

    def _run(self, side: Side, blocks: range) -> None:
        with side.client() as nbd:
            for i in blocks:
                try:
                    nbd.write(i * self.size, block(i, self.size))
                except NbdError as exc:
                    self.errors.append(exc.errno)
                    return
                self.acked.append(i)


def lose_peer(a: Side, b: Side) -> None:
    """The secondary drops the link (no OUTDATE travels): the primary just loses it."""
    b.call("disconnect")
    wait_until("a loses b", lambda: a.status()["connection"] != "Connected")


def test_link_loss_freezes_until_the_operator_outdates_the_peer(cluster: Cluster) -> None:
    a, b = cluster.pair(fencing="resource-only")
    lose_peer(a, b)
    w = Writer(a, range(10, 20))
    wait_until("frozen", lambda: a.status()["extra"]["io"] == "suspended")
    time.sleep(0.5)
    assert w.acked == [] and w.errors == [], "nothing is acknowledged while frozen"
    extra = a.status()["extra"]
    assert extra["frozen"]["reason"].startswith("replication link lost")
    assert extra["fencing"] == "resource-only" and extra["peer_outdated"] is False
    assert os.pread(os.open(a.backing, os.O_RDONLY), 4096, 10 * 4096) != block(10)
    with pytest.raises(UnsafeOperation, match="--accept-data-loss"):
        a.call("outdate_peer")
    result = a.call("outdate_peer", accept_data_loss=True)
    assert "I/O resumed" in result["message"]
    w.thread.join(10)
    assert w.acked == list(range(10, 20))
    st = a.status()
    assert st["extra"]["io"] == "running" and st["extra"]["peer_outdated"] is True
    assert "operator outdated the peer" in st["extra"]["resumed"]
    assert st["out_of_sync_bytes"] > 0


def test_a_frozen_write_fails_with_eio_after_the_hold_bound(cluster: Cluster) -> None:
    a, b = cluster.pair(fencing="resource-only", freeze_timeout=0.4)
    lose_peer(a, b)
    w = Writer(a, range(3))
    w.thread.join(10)
    assert w.acked == [] and w.errors == [EIO]
    assert a.status()["extra"]["io"] == "suspended", "still frozen: the bound is per write"
    with a.client() as nbd, pytest.raises(NbdError):
        nbd.flush()  # a flush claims nothing either


def test_writes_in_flight_at_the_link_loss_are_held_then_released_by_resync(
    cluster: Cluster,
) -> None:
    """A write the peer never acknowledged (its acks are held up) when the link dies is
    durable here, but its acknowledgement is held. The secondary comes back: the
    primary resyncs it, and once the peer has durably gone Inconsistent (RS_BEGIN
    acknowledged) the held acknowledgement is given, then the rest go on."""
    a, b = cluster.pair(fencing="resource-only")
    b_session = b.engine.session
    assert b_session is not None
    with b_session.send_lock:  # b applies the write but cannot acknowledge it
        w = Writer(a, range(40, 48))
        wait_until("in flight", lambda: a.status()["lag_bytes"] > 0)
        b.call("disconnect")
        wait_until("a loses b", lambda: a.status()["connection"] != "Connected")
    wait_until("held", lambda: (a.status()["extra"]["frozen"] or {}).get("held_writes") == 1)
    time.sleep(0.3)
    assert w.acked == []
    b.call("connect")  # b accepts again; a dials it
    w.thread.join(15)
    assert w.acked == list(range(40, 48))
    wait_until("in sync", lambda: connected(a) and connected(b))
    assert a.content() == b.content()
    assert "resyncs from here" in (a.status()["extra"]["resumed"] or "")
    assert a.status()["extra"]["peer_outdated"] is False, "guarded again once in sync"


def test_dont_care_acknowledges_alone(cluster: Cluster) -> None:
    a, b = cluster.pair(fencing="dont-care")
    lose_peer(a, b)
    w = Writer(a, range(5))
    w.thread.join(10)
    assert w.acked == list(range(5))
    assert a.status()["extra"]["io"] == "running"


def test_a_planned_disconnect_outdates_the_peer_first(cluster: Cluster) -> None:
    a, b = cluster.pair(fencing="resource-only")
    a.call("disconnect")
    assert b.status()["disk"] == "Outdated", "the peer knows it is behind, durably"
    w = Writer(a, range(5))
    w.thread.join(10)
    assert w.acked == list(range(5)), "no freeze: the peer is Outdated"
    a.call("connect")
    wait_until("in sync", lambda: connected(a) and connected(b))


def test_a_primary_that_learns_a_newer_epoch_acknowledges_nothing(cluster: Cluster) -> None:
    a, b = cluster.pair(fencing="dont-care")
    a.call("disconnect")
    wait_until("b sees a go", lambda: b.status()["connection"] != "Connected")
    b.call("promote", epoch=3, force=True, accept_data_loss=True)
    with a.client() as nbd:
        nbd.write(0, block(1))  # still alone: acknowledged (dont-care)
    with pytest.raises(ReplicationError, match="stale primary"):
        a.call("connect")
    st = a.status()["extra"]
    assert st["io"] == "refused" and "epoch 3" in st["stale"]
    with a.client() as nbd, pytest.raises(NbdError) as info:
        nbd.write(4096, block(2))
    assert info.value.errno == EIO
    a.call("demote")
    assert a.status()["extra"]["stale"] is None


def test_a_pulled_ahead_secondary_is_outdated_and_refuses_promotion(cluster: Cluster) -> None:
    """§1.7: the secondary records Outdated durably before any write it lacks is
    acknowledged; after the primary is gone (and after its own restart) it says so and
    refuses promotion without --force --accept-data-loss."""
    a, b = cluster.pair(
        mode="async", on_congestion="pull-ahead", max_lag_bytes=128 * 1024, resync_rate=64 * 1024
    )  # a slow catch-up: the primary dies while its peer is behind
    assert a.engine.session is not None
    with a.engine.session.send_lock:  # hold the sender: the queue fills, a pulls ahead
        w = Writer(a, range(32), size=64 * 1024)
        wait_until("ahead", lambda: a.status()["extra"]["ahead"] is True)
    w.thread.join(15)
    assert len(w.acked) == 32
    cluster.stop(a)
    assert b.status()["disk"] in ("Outdated", "Inconsistent")
    cluster.stop(b)
    b2 = cluster.start("b", Role.SECONDARY, mode="async")
    assert b2.status()["disk"] in ("Outdated", "Inconsistent")
    with pytest.raises(UnsafeOperation, match="not UpToDate"):
        b2.call("promote", epoch=2)
    b2.call("promote", epoch=2, force=True, accept_data_loss=True)


def test_an_interrupted_sync_target_reports_what_is_left(cluster: Cluster) -> None:
    a, b = cluster.pair(resync_rate=256 * 1024)
    a.call("disconnect")
    with a.client() as nbd:
        for r in range(0, 64, 2):  # 32 regions with data: 2 MiB at 256 KiB/s
            nbd.write(r * REGION, os.urandom(REGION))
    a.call("connect", wait=0.5)
    wait_until("resyncing", lambda: b.status()["connection"] == "SyncTarget")
    time.sleep(1.0)
    a.call("disconnect")
    wait_until("b StandAlone", lambda: b.status()["connection"] != "SyncTarget")
    left = b.status()["out_of_sync_bytes"]
    assert 0 < left < 32 * REGION, left
    assert left % REGION == 0
    cluster.stop(b)
    b2 = cluster.start("b", Role.SECONDARY)
    assert b2.status()["disk"] == "Inconsistent"
    assert 0 < b2.status()["out_of_sync_bytes"] <= left + 2 * REGION  # lazily written back


@pytest.mark.parametrize(
    ("script", "io", "acked"),
    [
        ("echo recorded; exit 0", "running", 5),  # the peer is outdated: resume
        ("echo the peer holds the lease; exit 5", "refused", 0),  # stale: nothing, ever
        ("echo witness unreachable; exit 1", "suspended", 0),  # retried, stays frozen
    ],
)
def test_the_fence_peer_hook_decides(cluster: Cluster, script: str, io: str, acked: int) -> None:
    a, b = cluster.pair(
        fencing="resource-only", fence_peer_cmd=f"sh -c '{script}'", freeze_timeout=3.0
    )
    lose_peer(a, b)
    w = Writer(a, range(5))
    w.thread.join(1.5 if acked == 0 else 10)
    assert len(w.acked) == acked
    extra = a.status()["extra"]
    assert extra["io"] == io
    assert extra["fence_peer"]["output"] == script.split(";")[0].removeprefix("echo ")
    if io == "suspended":
        wait_until("retried", lambda: a.status()["extra"]["fence_peer"]["attempt"] >= 2)
    w.thread.join(10)
    assert len(w.acked) == acked, "a write given up is never acknowledged later"


@pytest.mark.parametrize(
    ("mode", "fencing", "hook"),
    [("sync", "resource-only", True), ("sync", "dont-care", False), ("async", "dont-care", None)],
)
def test_the_driver_passes_the_volumes_fencing(
    tmp_path: Path, mode: str, fencing: str, hook: bool | None
) -> None:
    from dataclasses import replace

    from drorch.environment import Environment
    from drorch.model.types import Node, ReplicationMode
    from drorch.replication.pyrepl.driver import PyreplReplicator
    from tests.drbd.clusters import two_site_cluster

    volume = replace(two_site_cluster().volumes[0], mode=ReplicationMode(mode), fencing=fencing)
    env = Environment(base_dir=tmp_path, config_file=tmp_path / "c.yaml")
    argv = PyreplReplicator(volume, Node("a1"), env)._serve_argv()
    if hook is None:
        assert "--fencing" not in argv
        return
    assert argv[argv.index("--fencing") + 1] == fencing
    assert ("--fence-peer-cmd" in argv) is hook
    if hook:
        cmd = argv[argv.index("--fence-peer-cmd") + 1]
        assert cmd.endswith(f"repl fence-peer -c {tmp_path}/c.yaml --volume r0 --node a1")
        assert "repl unfence-peer" in argv[argv.index("--unfence-peer-cmd") + 1]


def test_an_outdate_recorded_after_the_peer_came_back_in_sync_is_cleared(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The witness's record landed after the link was back in sync (the lab's run: the
    record stayed, and a planned promote at B was refused). The hook's late record is now
    cleared at once, naming the record the hook reported."""
    unfenced = tmp_path / "unfenced"
    hook = tmp_path / "fence-peer.sh"  # a slow witness: records, 2 s later
    hook.write_text('sleep 2\necho "recorded since epoch 1 (record 7)"\n')
    a, b = cluster.pair(
        fencing="resource-only",
        fence_peer_cmd=f"sh {hook}",
        unfence_peer_cmd=f"sh -c 'echo $DRORCH_OUTDATE_RECORD > {unfenced}'",
    )
    wait_until("day 0's unfence (the first full sync)", unfenced.exists)
    unfenced.unlink()
    lose_peer(a, b)
    wait_until("frozen", lambda: a.status()["extra"]["io"] == "suspended")
    b.call("connect")  # back before the hook is done, nothing written: in sync
    wait_until("in sync again", lambda: connected(a) and connected(b))
    assert not unfenced.exists()
    wait_until("the late record cleared", unfenced.exists, timeout=15)
    assert unfenced.read_text().strip() == "7"
    assert a.status()["extra"]["peer_outdated"] is False
