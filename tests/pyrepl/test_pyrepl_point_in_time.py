"""Point-in-time views (pointintime.py) on in-process daemons: a view shows the replica
as it was when taken while replicated writes, discards and resyncs change it; its export
is read-only; dropping it removes its store; labels are checked."""

from __future__ import annotations

import pytest

from drorch.replication.base import ReplicationError, Role
from drorch.replication.pyrepl.nbd_proto import Cmd
from tests.pyrepl.conftest import REGION, SIZE, Cluster, connected, wait_until
from tests.pyrepl.nbd_client import NbdClient, NbdError


def block(byte: int, n: int = REGION) -> bytes:
    return bytes([byte]) * n


def test_a_view_keeps_the_secondary_as_it_was_while_replication_goes_on(
    cluster: Cluster,
) -> None:
    a, b = cluster.pair()
    with a.client() as c:
        c.write(0, block(0x11, 3 * REGION))
    wait_until("in sync", lambda: connected(a) and connected(b))
    taken = b.call("pit_take", label="t1")
    assert taken["export"] == "vol@t1" and taken["uri"].endswith("/vol@t1")
    assert b.call("pit_take", label="t1")["taken_at"] == taken["taken_at"]  # the same view
    store = b.backing.with_name("b.img.pit-t1")
    assert taken["store"] == str(store) and store.exists()
    with a.client() as c:
        c.write(REGION // 2, block(0x22, REGION))  # straddles two chunks
        c.request(Cmd.TRIM, 2 * REGION, REGION)
    wait_until("in sync", lambda: connected(a) and connected(b))
    now = b.content()
    assert now[REGION // 2 : REGION // 2 + REGION] == block(0x22)  # replicated to B
    assert now[2 * REGION : 3 * REGION] == bytes(REGION)  # the discard too
    host, port = b.nbd
    with NbdClient(host, port, "vol@t1") as view:
        assert view.read_only and view.size == SIZE
        assert view.read(0, 3 * REGION) == block(0x11, 3 * REGION)  # as it was
        assert view.read(4 * REGION, REGION) == bytes(REGION)
        with pytest.raises(NbdError):
            view.write(0, block(0x33, 512))
    (listed,) = b.call("pit_list")["views"]
    assert listed["kept_bytes"] == 3 * REGION  # two chunks of the write, one of the discard
    assert b.status()["point_in_time"] == [listed]
    assert b.call("pit_drop", label="t1")["message"] == "dropped t1"
    assert not store.exists() and b.call("pit_list")["views"] == []
    assert b.call("pit_drop", label="t1")["message"] == "no view 't1'"
    with pytest.raises(NbdError):  # the export is gone with the view
        NbdClient(host, port, "vol@t1")


def test_a_view_survives_a_resync_from_the_primary(cluster: Cluster) -> None:
    a, b = cluster.pair()
    with a.client() as c:
        c.write(0, block(0x44, 2 * REGION))
    wait_until("in sync", lambda: connected(a) and connected(b))
    b.call("pit_take", label="before-resync")
    b.call("disconnect")
    with a.client() as c:  # the primary writes alone; a resync brings it to B
        c.write(0, block(0x55, 2 * REGION))
    b.call("connect")
    wait_until("resynced", lambda: connected(a) and connected(b))
    assert b.content()[: 2 * REGION] == block(0x55, 2 * REGION)
    host, port = b.nbd
    with NbdClient(host, port, "vol@before-resync") as view:
        assert view.read(0, 2 * REGION) == block(0x44, 2 * REGION)


def test_labels_and_stores_are_checked(cluster: Cluster) -> None:
    b = cluster.start("b", Role.SECONDARY)
    for bad in ("", "a/b", "x" * 65, "../up"):
        with pytest.raises(ReplicationError, match="point-in-time label"):
            b.call("pit_take", label=bad)
    with pytest.raises(ReplicationError, match="cannot make the store"):
        b.call("pit_take", label="t", store=str(b.backing.parent / "no" / "such" / "dir"))
