"""Two primaries (pyrepl/dual.py) against real daemons, sockets, files and NBD clients on
loopback: the second primary forwards its writes to the first, so both disks hold every
acknowledged write, in one order."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from drorch.quorum.tls import generate_self_signed
from drorch.replication.base import ReplicationError, Role, StaleEpoch
from drorch.replication.pyrepl.dual import join as dual_join
from drorch.replication.pyrepl.meta import load_meta
from drorch.replication.pyrepl.nbd_proto import Cmd
from drorch.replication.pyrepl.tls import link_tls
from tests.pyrepl.conftest import SIZE, Cluster, Side, connected, wait_until
from tests.pyrepl.nbd_client import NbdError


def block(i: int, size: int = 4096) -> bytes:
    return (i.to_bytes(4, "big") * (size // 4))[:size]


def dual(side: Side) -> dict[str, object]:
    return dict(side.status()["extra"]["two_primaries"])


def two_primaries(cluster: Cluster) -> tuple[Side, Side]:
    """a primary, b promoted beside it as second primary."""
    a, b = cluster.pair(mode="sync")
    assert a.call("allow_two_primaries")["message"] == "two primaries allowed"
    wait_until("b hears it", lambda: dual(b)["allowed"] is True and dual(b)["peer_allows"])
    message = b.call("promote")["message"]
    assert "second primary" in message and "joining its epoch 0" in message
    wait_until("a sees b primary", lambda: dual(a)["state"] == "first-primary")
    assert dual(b)["state"] == "second-primary"
    return a, b


def test_allow_is_refused_in_async_mode(cluster: Cluster) -> None:
    a, _ = cluster.pair(mode="async")
    with pytest.raises(ReplicationError, match="two primaries need sync replication"):
        a.call("allow_two_primaries")
    assert dual(a)["allowed"] is False


def test_allow_is_refused_when_not_connected(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="sync")
    a.call("disconnect")
    wait_until("b sees a go", lambda: b.status()["connection"] != "Connected")
    for side in (a, b):
        with pytest.raises(ReplicationError, match="need the peer connected"):
            side.call("allow_two_primaries")


def test_allow_is_refused_while_the_peer_is_not_up_to_date(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="sync", resync_rate=64 * 1024)
    a.call("disconnect")
    with a.client() as nbd:  # 1 MiB of changes: 16 s of resync at 64 KiB/s
        for i in range(16):
            nbd.write(i * 65536, block(i + 1, 65536))
    a.call("connect", wait=0.5)
    wait_until("resync running", lambda: a.status()["connection"] == "SyncSource")
    with pytest.raises(ReplicationError, match="in sync, not SyncSource"):
        a.call("allow_two_primaries")
    with pytest.raises(ReplicationError, match="in sync, not SyncTarget"):
        b.call("allow_two_primaries")


def test_second_primary_is_refused_unless_allowed(cluster: Cluster) -> None:
    _, b = cluster.pair(mode="sync")
    with pytest.raises(ReplicationError, match="two primaries are not allowed here"):
        b.call("promote")
    assert b.status()["role"] == "secondary"


def test_allowed_is_persisted_and_survives_a_restart(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="sync")
    b.call("allow_two_primaries")  # either side may allow: the peer records it too
    assert load_meta(a.engine.config.meta_file).two_primaries is True
    assert load_meta(b.engine.config.meta_file).two_primaries is True
    cluster.stop(b)
    b = cluster.start("b", Role.SECONDARY)
    assert dual(b)["allowed"] is True  # read back from the metadata at start
    a.call("forbid_two_primaries")  # not connected now: forbidding needs no peer
    assert load_meta(a.engine.config.meta_file).two_primaries is False


def test_a_write_at_the_second_primary_is_on_both_disks_before_its_ack(
    cluster: Cluster,
) -> None:
    a, b = two_primaries(cluster)
    fa, fb = os.open(a.backing, os.O_RDONLY), os.open(b.backing, os.O_RDONLY)
    try:
        with b.client() as nbd:
            assert not nbd.read_only
            for i in range(1, 120):
                size = 4096 if i % 3 else 128 * 1024
                offset = (i * 7919 * 4096) % (SIZE - size)
                nbd.write(offset, block(i, size), fua=i % 5 == 0)
                assert os.pread(fa, size, offset) == block(i, size), f"write {i} not at a"
                assert os.pread(fb, size, offset) == block(i, size), f"write {i} not at b"
            nbd.flush()
    finally:
        os.close(fa)
        os.close(fb)
    assert dual(b)["forwarded"] >= 119


def test_demote_of_the_first_hands_over_on_the_same_nbd_connection(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="sync")
    a.call("allow_two_primaries")
    assert (
        "epoch 3 is taken when the first primary demotes" in b.call("promote", epoch=3)["message"]
    )
    again = b.call("promote", epoch=4)["message"]  # never raised while a still writes
    assert "already second primary at epoch 0; epoch 4 is taken" in again
    assert b.status()["epoch"] == 0 and a.status()["epoch"] == 0
    with b.client() as nbd:
        nbd.write(0, block(1))
        assert a.call("demote")["message"] == "demoted to secondary"
        wait_until("b is sole primary", lambda: dual(b)["state"] == "off")
        assert b.status()["role"] == "primary" and b.status()["epoch"] == 4
        wait_until("a learns epoch 4", lambda: a.status()["epoch"] == 4)
        for i in range(2, 50):  # the same connection goes on, now the normal sync path
            nbd.write(i * 4096, block(i))
        assert nbd.read(0, 4096) == block(1)
    wait_until("in sync", lambda: connected(b))
    assert a.content() == b.content()
    b.call("forbid_two_primaries")
    assert dual(a)["allowed"] is False


def test_writes_from_both_sides_interleaved_end_identical(cluster: Cluster) -> None:
    a, b = two_primaries(cluster)
    errors: list[BaseException] = []

    def writer(side: Side, salt: int) -> None:
        try:
            with side.client() as nbd:
                for i in range(150):
                    # overlapping offsets on purpose: both sides write the same blocks
                    offset = ((i * 31 + salt) % 64) * 4096
                    nbd.write(offset, block(salt * 1000 + i))
                    if i % 40 == 0:  # zeroes are forwarded too
                        nbd.request(Cmd.WRITE_ZEROES, offset + 4096, 8192)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s, n)) for n, s in ((1, a), (2, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    wait_until("quiet", lambda: a.status()["lag_bytes"] == 0 and dual(b)["forwarding"] == 0)
    assert hashlib.sha256(a.content()).digest() == hashlib.sha256(b.content()).digest()


def test_forbid_is_refused_while_both_are_primary(cluster: Cluster) -> None:
    a, b = two_primaries(cluster)
    for side in (a, b):
        with pytest.raises(ReplicationError, match="both sides are primary"):
            side.call("forbid_two_primaries")
    b.call("demote")
    wait_until("a sees b secondary", lambda: dual(a)["state"] == "off")
    assert a.call("forbid_two_primaries")["message"] == "two primaries forbidden"


def test_second_primary_refuses_an_older_epoch(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="sync")
    a.call("promote", epoch=4)  # raises a's epoch while primary; b learns it
    wait_until("b learns epoch 4", lambda: b.status()["epoch"] == 4)
    a.call("allow_two_primaries")
    with pytest.raises(StaleEpoch):
        b.call("promote", epoch=3)
    assert "joining its epoch 4" in b.call("promote", epoch=4)["message"]


def test_link_cut_while_dual_acknowledges_nothing_divergent(cluster: Cluster) -> None:
    a, b = two_primaries(cluster)
    with b.client() as nbd:
        nbd.write(0, block(1))
        a.call("disconnect")
        wait_until("b orphaned", lambda: dual(b)["state"] == "orphaned")
        with pytest.raises(NbdError):
            nbd.write(4096, block(2))
        with pytest.raises(NbdError):
            nbd.flush()
        assert nbd.read(0, 4096) == block(1)  # reads go on
    assert b.content()[4096:8192] != block(2)
    with pytest.raises(ReplicationError, match="cut off from the first"):
        b.call("forbid_two_primaries")
    assert b.call("demote")["message"] == "demoted to secondary"
    assert dual(b)["state"] == "off"


def test_link_cut_under_load_leaves_no_acknowledged_write_missing(cluster: Cluster) -> None:
    """b writes numbered blocks as fast as it can while the link is cut: every write b
    acknowledged is on both disks, and b's disk holds nothing a's does not."""
    a, b = two_primaries(cluster)
    acked: list[int] = []
    failed: list[int] = []

    def writer() -> None:
        with b.client() as nbd:
            for i in range(1, 400):
                try:
                    nbd.write(i * 4096, block(i))
                except NbdError:
                    failed.append(i)
                    return
                acked.append(i)

    t = threading.Thread(target=writer)
    t.start()
    wait_until("some writes", lambda: len(acked) > 30)
    a.call("disconnect")
    t.join(30)
    assert failed, "b went on acknowledging after the link was cut"
    assert dual(b)["state"] == "orphaned"
    da, db = a.content(), b.content()
    for i in acked:
        at = slice(i * 4096, (i + 1) * 4096)
        assert da[at] == block(i) and db[at] == block(i), f"acknowledged write {i} lost"
    for i in range(1, 400):  # b never holds a block a does not (no divergence)
        at = slice(i * 4096, (i + 1) * 4096)
        assert db[at] in (da[at], bytes(4096)), f"block {i} at b is not a's"


def test_hand_over_under_load_fails_no_write(cluster: Cluster) -> None:
    """b writes without pause while a demotes: no write fails, none is lost, and both
    disks end identical (forwards that reach a after it demoted are retried at b)."""
    a, b = two_primaries(cluster)
    acked: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            with b.client() as nbd:
                i = 0
                while not stop.is_set() and i < 3000:
                    i += 1
                    nbd.write((i % 512) * 4096, block(i))
                    acked.append(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    wait_until("writing", lambda: len(acked) > 50)
    a.call("demote")
    wait_until("more after the hand-over", lambda: len(acked) > 50 + 200 or bool(errors))
    stop.set()
    t.join(30)
    assert not errors, errors
    assert dual(b)["state"] == "off" and b.status()["role"] == "primary"
    wait_until("in sync", lambda: connected(b))
    last = {i % 512: i for i in acked}
    db = b.content()
    for slot, i in last.items():  # the newest acknowledged write of every block is there
        assert db[slot * 4096 : (slot + 1) * 4096] == block(i), f"write {i} lost"
    assert a.content() == db


def test_forwarding_over_a_pinned_tls_link(cluster: Cluster, tmp_path: Path) -> None:
    """TLS links take the buffered path both ways (no splice): forwards work the same."""
    pems = {}
    for name in ("a", "b"):
        cert, key, _fp = generate_self_signed(f"site-{name}", tmp_path / f"pki-{name}")
        pems[name] = (cert, key)
    b = cluster.start("b", Role.SECONDARY, tls=link_tls(*pems["b"], pems["a"][0]))
    a = cluster.start("a", Role.PRIMARY, peer=b.listen, tls=link_tls(*pems["a"], pems["b"][0]))
    wait_until("connected", lambda: connected(a) and connected(b))
    a.call("allow_two_primaries")
    wait_until("b hears it", lambda: dual(b)["peer_allows"] is True)
    b.call("promote")
    with b.client() as nbd, a.client() as nbd_a:
        for i in range(1, 40):
            size = 4096 if i % 2 else 256 * 1024
            nbd.write(i * 262144 % (SIZE - size), block(i, size))
            nbd_a.write((i * 262144 + 131072) % (SIZE - 4096), block(1000 + i))
    wait_until("quiet", lambda: dual(b)["forwarding"] == 0 and a.status()["lag_bytes"] == 0)
    assert a.content() == b.content()


def test_a_dry_run_join_changes_nothing(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="sync")
    a.call("allow_two_primaries")
    wait_until("b hears it", lambda: dual(b)["peer_allows"] is True)
    with b.engine.cond:
        message = dual_join(b.engine, None, dry_run=True)
    assert message == "would promote as second primary beside the primary peer, at epoch 0"
    assert b.status()["role"] == "secondary" and dual(b)["state"] == "off"


def test_the_first_primary_raising_its_epoch_does_not_fence_the_second(
    cluster: Cluster,
) -> None:
    a, b = two_primaries(cluster)
    a.call("promote", epoch=9)  # the first primary, already primary, takes a newer epoch
    wait_until("b adopts it", lambda: b.status()["epoch"] == 9)
    with b.client() as nbd:
        nbd.write(0, block(7))  # the second goes on writing (forwarded)
        a.call("demote")
        wait_until("hand-over", lambda: dual(b)["state"] == "off")
        nbd.write(4096, block(8))  # and, alone, through its own path
    assert a.content()[:8192] == b.content()[:8192] == block(7) + block(8)
