"""Replication behaviour against real daemons, sockets and files on loopback."""

from __future__ import annotations

import os
import threading

import pytest

from drorch.replication.base import ReplicationError, Role, SplitBrain, StaleEpoch, UnsafeOperation
from tests.pyrepl.conftest import REGION, SIZE, Cluster, connected, wait_until
from tests.pyrepl.nbd_client import NbdError


def block(i: int, size: int = 4096) -> bytes:
    return (i.to_bytes(4, "big") * (size // 4))[:size]


def test_sync_write_is_on_the_secondary_file_when_acknowledged(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="sync")
    fd = os.open(b.backing, os.O_RDONLY)
    try:
        with a.client() as nbd:
            for i in range(1, 200):
                size = 4096 if i % 3 else 128 * 1024  # both the buffered and spliced paths
                offset = (i * 7919 * 4096) % (SIZE - size)
                nbd.write(offset, block(i, size))
                # the reply has arrived: the secondary's file must already hold it
                assert os.pread(fd, size, offset) == block(i, size), f"write {i} not there"
    finally:
        os.close(fd)
    assert a.status()["lag_bytes"] == 0


def test_async_replica_is_always_a_prefix(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="async")
    count = 600  # block i at offset i*4096: a prefix is "blocks 0..k written, none after"
    stop = threading.Event()
    violations: list[str] = []
    checks: list[int] = []

    def watch() -> None:
        fd = os.open(b.backing, os.O_RDONLY)
        try:
            while not stop.is_set():
                # find the newest block present, then read every older one: they were
                # applied before it, so a missing one would be a hole in the history
                newest = next(
                    (
                        i
                        for i in reversed(range(count))
                        if os.pread(fd, 4096, i * 4096) == block(i + 1)
                    ),
                    -1,
                )
                for i in range(newest):
                    if os.pread(fd, 4096, i * 4096) != block(i + 1):
                        violations.append(f"hole at block {i} below block {newest}")
                        break
                checks.append(newest)
        finally:
            os.close(fd)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with a.client() as nbd:
            for i in range(count):
                nbd.write(i * 4096, block(i + 1))
    finally:
        stop.set()
        watcher.join(30)
    assert not violations, violations[:3]
    assert len(checks) > 3, "the watcher looked several times while writes were running"
    wait_until("async queue drained", lambda: a.status()["lag_bytes"] == 0)
    assert a.content() == b.content()


def test_disconnect_write_reconnect_resyncs_only_dirty_regions(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="sync")
    before = a.status()["extra"]["stats"]["resync_bytes_sent"]
    a.call("disconnect")
    st = a.status()
    assert st["connection"] == "StandAlone"
    dirty_offsets = [0, 5 * REGION + 100, 17 * REGION, 40 * REGION + REGION - 10]
    with a.client() as nbd:
        for off in dirty_offsets:
            nbd.write(off, b"\xee" * 20)  # the last one spans two regions
    st = a.status()
    dirty_regions = {off // REGION for off in dirty_offsets} | {41}
    assert st["out_of_sync_bytes"] == len(dirty_regions) * REGION
    assert st["generation"]["bitmap"] != "0", "a new data generation began"
    result = a.call("connect")
    assert result["connection"] in ("SyncSource", "Connected")
    wait_until("resync", lambda: connected(a) and connected(b))
    st = a.status()
    sent = st["extra"]["stats"]["resync_bytes_sent"] - before
    assert sent == len(dirty_regions) * REGION, "only the dirty regions travel"
    assert st["extra"]["resync"]["regions_sent"] == len(dirty_regions)
    assert st["out_of_sync_bytes"] == 0 and st["generation"]["bitmap"] == "0"
    assert a.content() == b.content()
    assert b.status()["generation"]["current"] == st["generation"]["current"]


def test_resync_progress_reports_done_to_go_and_eta(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="sync")
    a.call("disconnect")
    with a.client() as nbd:
        for r in range(0, 64):
            nbd.write(r * REGION, os.urandom(REGION))
    a.call("connect")
    wait_until("resync", lambda: connected(a) and connected(b))
    resync = a.status()["extra"]["resync"]
    assert resync["total_bytes"] == 64 * REGION
    assert resync["done_bytes"] == 64 * REGION and resync["remaining_bytes"] == 0
    assert resync["eta_seconds"] == 0.0 and resync["finished"] is True
    target = b.status()["extra"]["resync"]
    assert target["done_bytes"] == 64 * REGION


def test_fresh_secondary_gets_a_full_sync_and_holes_cost_nothing(cluster: Cluster) -> None:
    b = cluster.start("b", Role.SECONDARY)
    assert b.status()["disk"] == "Inconsistent"
    with pytest.raises(NbdError) as info, b.client() as nbd:
        nbd.read(0, 4096)  # an Inconsistent disk is not readable
    assert info.value.errno == 5
    a_path = cluster.root / "a.img"
    with open(a_path, "wb") as f:  # pre-existing data in two regions, rest is holes
        f.truncate(SIZE)
        f.seek(3 * REGION)
        f.write(b"\x11" * REGION)
        f.seek(50 * REGION)
        f.write(b"\x22" * 10)
    a = cluster.start("a", Role.PRIMARY, peer=b.listen)
    wait_until("full sync", lambda: connected(a) and connected(b))
    resync = a.status()["extra"]["resync"]
    assert resync["total_bytes"] == SIZE
    assert resync["sent_bytes"] == 2 * REGION
    assert a.content() == b.content()


def test_split_brain_detected_then_resolved(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="sync")
    a.call("disconnect")
    b.call("disconnect")
    with a.client() as nbd:
        nbd.write(0, b"A" * 4096)
    b.call("promote")  # by hand, without a quorum epoch: nothing fences a
    with b.client() as nbd:
        nbd.write(10 * REGION, b"B" * 4096)
    b.call("demote")
    b.call("connect", wait=0.1)
    with pytest.raises(SplitBrain) as info:
        a.call("connect")
    assert info.value.local["current"] != info.value.peer["current"]
    assert info.value.local["bitmap"] == info.value.peer["bitmap"] != "0"
    for side in (a, b):
        st = side.status()
        assert st["connection"] == "StandAlone"
        assert "split-brain" in st["extra"]["last_error"]
        assert st["extra"]["split_brain"]["peer"]
    # b's change is discarded: it becomes a sync target of a
    result = b.call("resolve", discard_local=True, wait=0.1)
    assert "discarded" in result["message"]
    a.call("connect")
    wait_until("resolved", lambda: connected(a) and connected(b))
    assert a.content() == b.content()
    assert b.content()[10 * REGION : 10 * REGION + 4096] == bytes(4096)
    assert b.content()[:4096] == b"A" * 4096
    assert a.call("verify")["out_of_sync"] == []


def test_stale_primary_is_rejected_by_epoch(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="sync")
    a.call("promote", epoch=5)
    assert b.status()["epoch"] == 5
    a.call("disconnect")
    wait_until("b sees a go", lambda: b.status()["connection"] != "Connected")
    b.call("promote", epoch=7)  # the quorum moved on: b is primary at epoch 7
    b.call("demote")  # ... and is secondary again, but remembers epoch 7
    with pytest.raises(StaleEpoch) as info:
        a.call("connect")
    assert "stale primary" in str(info.value)
    assert a.status()["connection"] == "StandAlone"
    assert "epoch 5" in b.status()["extra"]["last_error"]


def test_promote_refuses_an_inconsistent_disk_unless_forced(cluster: Cluster) -> None:
    b = cluster.start("b", Role.SECONDARY)
    with pytest.raises(UnsafeOperation) as info:
        b.call("promote", epoch=1)
    assert "Inconsistent" in str(info.value)
    assert b.status()["role"] == "secondary"
    with pytest.raises(UnsafeOperation):
        b.call("promote", epoch=1, force=True)  # force alone is not enough
    message = b.call("promote", epoch=1, force=True, accept_data_loss=True)["message"]
    assert "data loss accepted" in message
    st = b.status()
    assert (st["role"], st["disk"], st["epoch"]) == ("primary", "UpToDate", 1)


def test_secondary_export_is_read_only(cluster: Cluster) -> None:
    a, b = cluster.pair()
    with a.client() as nbd:
        nbd.write(0, b"x" * 512)
    with b.client() as nbd:
        assert nbd.read_only
        assert nbd.read(0, 512) == b"x" * 512
        with pytest.raises(NbdError) as info:
            nbd.write(0, b"y" * 512)
        assert info.value.errno == 1  # EPERM
    # a demoted primary refuses writes on a connection opened while it was primary
    with a.client() as nbd:
        a.call("demote")
        with pytest.raises(NbdError) as info:
            nbd.write(0, b"z" * 512)
        assert info.value.errno == 1
    assert b.content()[:512] == b"x" * 512


def test_verify_finds_a_region_changed_behind_the_replicator(cluster: Cluster) -> None:
    a, b = cluster.pair()
    with a.client() as nbd:
        nbd.write(0, os.urandom(SIZE // 4))
    assert a.call("verify")["out_of_sync"] == []
    fd = os.open(b.backing, os.O_WRONLY)
    try:
        os.pwrite(fd, b"corrupt", 9 * REGION + 5)
    finally:
        os.close(fd)
    result = a.call("verify")
    assert result["out_of_sync"] == [9 * REGION]
    assert result["out_of_sync_bytes"] == REGION
    assert a.status()["out_of_sync_bytes"] == REGION, "verify marks the region dirty"
    # the secondary can start a verify too (it asks the primary for digests)
    assert b.call("verify")["out_of_sync"] == [9 * REGION]


def test_async_pull_ahead_outdates_then_catches_up(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="async", on_congestion="pull-ahead", max_lag_bytes=256 * 1024)
    session = a.engine.session
    assert session is not None
    payload = os.urandom(128 * 1024)
    send_lock = session.send_lock
    acked: list[int] = []

    def writer() -> None:
        with a.client() as nbd:
            for i in range(8):
                nbd.write(i * len(payload), payload)
                acked.append(i)

    send_lock.acquire()  # the sender blocks before the socket: lag builds up
    t = threading.Thread(target=writer)
    try:
        t.start()
        wait_until("pulled ahead", lambda: a.status()["extra"]["ahead"] is True)
        st = a.status()
        assert st["out_of_sync_bytes"] > 0
        assert st["peer_disk"] == "Outdated"
        # the write that went unshipped waits until the peer acknowledges OUTDATE (which
        # cannot be sent yet): a secondary that does not know it is behind never sees an
        # acknowledged write it lacks
        t.join(0.5)
        assert t.is_alive() and len(acked) < 8
        assert b.status()["disk"] == "UpToDate"
    finally:
        send_lock.release()
    t.join(30)
    assert acked == list(range(8))
    wait_until("caught up", lambda: connected(a) and connected(b), timeout=30)
    assert a.content() == b.content()
    assert b.status()["disk"] == "UpToDate"


def test_async_block_waits_for_room_and_loses_nothing(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="async", on_congestion="block", max_lag_bytes=128 * 1024)
    with a.client() as nbd:
        for i in range(32):
            nbd.write(i * 64 * 1024, os.urandom(64 * 1024))
            assert a.engine.session.lag_bytes <= 128 * 1024 + 64 * 1024
    wait_until("drained", lambda: a.status()["lag_bytes"] == 0)
    assert a.content() == b.content()


def test_two_primaries_refuse_to_connect(cluster: Cluster) -> None:
    a, b = cluster.pair()
    a.call("disconnect")
    wait_until("b sees a go", lambda: b.status()["connection"] != "Connected")
    b.call("promote", epoch=1)
    with pytest.raises(ReplicationError) as info:
        a.call("connect")
    assert "this side is a stale primary" in str(info.value)


def test_promotion_epochs_are_strict(cluster: Cluster) -> None:
    """A new primary never shares an epoch with an earlier one: equal is refused, and a
    promotion without one takes one above every epoch this replica has seen."""
    a, b = cluster.pair()
    a.call("disconnect")
    wait_until("b sees a go", lambda: b.status()["connection"] != "Connected")
    with pytest.raises(ReplicationError, match="epoch 0 was already seen here"):
        b.call("promote", epoch=0)
    assert b.status()["role"] == "secondary"
    assert b.call("promote")["message"] == "promoted at epoch 1"
    b.call("demote")
    with pytest.raises(ReplicationError, match="epoch 1 was already seen here"):
        b.call("promote", epoch=1)
    assert b.call("promote")["message"] == "promoted at epoch 2"


def test_primary_restart_reconnects_without_resync(cluster: Cluster) -> None:
    a, b = cluster.pair()
    with a.client() as nbd:
        nbd.write(0, b"q" * 8192)
    cluster.stop(a)
    a2 = cluster.start("a", Role.PRIMARY, peer=b.listen)
    wait_until("reconnect", lambda: connected(a2) and connected(b))
    assert a2.status()["extra"]["resync"] is None
    assert a2.content() == b.content()


def test_target_is_inconsistent_until_a_paced_resync_ends(cluster: Cluster) -> None:
    # slow enough that a loaded machine (two test workers) still sees it under way
    a, b = cluster.pair(mode="sync", resync_rate=512 * 1024)
    a.call("disconnect")
    with a.client() as nbd:
        for r in range(32):
            nbd.write(r * REGION, os.urandom(REGION))  # 2 MiB dirty: about 4 s at 512 KiB/s
    a.call("connect")
    wait_until("resync under way", lambda: b.status()["connection"] == "SyncTarget")
    mid_b, mid_a = b.status(), a.status()
    assert mid_b["disk"] == "Inconsistent" and mid_b["peer_disk"] == "UpToDate"
    assert mid_a["connection"] == "SyncSource" and mid_a["peer_disk"] == "Inconsistent"
    assert 0 < mid_a["out_of_sync_bytes"] <= 32 * REGION
    resync = mid_a["extra"]["resync"]
    assert resync["total_bytes"] == 32 * REGION and not resync["finished"]
    with pytest.raises(ReplicationError):
        b.call("promote")  # refused: the peer is primary, and this copy is half-synced
    wait_until("resync done", lambda: connected(a) and connected(b))
    done = a.status()["extra"]["resync"]
    assert done["finished"] and done["elapsed_seconds"] >= 2.0, "the rate cap held"
    assert a.content() == b.content()


def test_a_peer_that_pings_but_never_acknowledges_is_dropped(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drorch.replication.pyrepl import session as session_module

    monkeypatch.setattr(session_module, "ACK_TIMEOUT", 1.0)
    a, b = cluster.pair(mode="sync")
    disk_hangs = threading.Event()
    backing = b.engine.backing
    real_sync, real_durable = backing.sync, backing.pwrite_durable
    backing.sync = lambda: disk_hangs.wait(20)  # the secondary's disk hangs
    backing.pwrite_durable = lambda offset, data: disk_hangs.wait(20)
    try:
        with a.client() as nbd:
            nbd.write(0, b"h" * 4096)  # completes once the link is dropped: local only
        st = a.status()
        assert st["connection"] in ("Connecting", "StandAlone")
        assert "has not acknowledged frame" in st["extra"]["last_error"]
        assert st["out_of_sync_bytes"] == REGION, "the unacknowledged region stays dirty"
    finally:
        disk_hangs.set()
        backing.sync, backing.pwrite_durable = real_sync, real_durable
    wait_until("reconnected and resynced", lambda: connected(a) and connected(b))
    assert a.content() == b.content()
