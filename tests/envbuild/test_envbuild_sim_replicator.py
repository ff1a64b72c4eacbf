"""SimReplicator: persisted replica pair with the Replicator seam's safety rules."""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType

import pytest

from drorch.environment import Environment
from drorch.model.types import Driver, Node, ReplicationMode, Volume
from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationError,
    Role,
    SplitBrain,
    StaleEpoch,
    UnsafeOperation,
)
from drorch.replication.sim import SimReplicator

VOLUME = Volume(
    "data", Driver.PYREPL, ReplicationMode.SYNC, 64 * 2**20, 7789,
    MappingProxyType({"a1": "/srv/a.img", "b1": "/srv/b.img"}),
)  # fmt: skip


def pair(tmp_path: Path, primary: str | None = "a1") -> tuple[SimReplicator, SimReplicator]:
    env = Environment(base_dir=tmp_path)
    a = SimReplicator(VOLUME, Node("a1"), env, primary_node=primary)
    b = SimReplicator(VOLUME, Node("b1"), env, primary_node=primary)
    return a, b


def test_fresh_volume_is_connected_in_sync_primary_at_the_primary_site(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    sa, sb = a.status(), b.status()
    assert (sa.role, sa.disk, sa.connection, sa.peer_role) == (
        Role.PRIMARY, DiskState.UP_TO_DATE, ConnState.CONNECTED, Role.SECONDARY,
    )  # fmt: skip
    assert (sb.role, sb.peer_disk, sb.mode) == (Role.SECONDARY, DiskState.UP_TO_DATE, "sync")
    # state lives in the default sim state dir, shared by both replicas
    assert (tmp_path / ".drorch-state" / "replication" / "data.json").exists()


def test_planned_switchover_demote_then_promote_with_epoch(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    with pytest.raises(ReplicationError, match="peer a1 is primary"):
        b.promote(epoch=2)
    a.demote()
    b.promote(epoch=2)
    assert b.status().role is Role.PRIMARY and b.status().epoch == 2
    assert a.status().peer_role is Role.PRIMARY
    b.demote()
    with pytest.raises(StaleEpoch, match="epoch 1 is older than epoch 2"):
        a.promote(epoch=1)


def test_promoting_an_outdated_replica_needs_force_and_data_loss_ack(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    a.disconnect()
    a.write(4096)  # primary keeps writing while B is cut off
    b.outdate()  # the fence-peer handler marks B behind
    assert b.status().connection is ConnState.CONNECTING
    assert a.status().out_of_sync_bytes == 4096
    a.demote()
    with pytest.raises(UnsafeOperation, match="local disk on b1 is Outdated"):
        b.promote(epoch=3)
    with pytest.raises(UnsafeOperation):
        b.promote(epoch=3, force=True)  # force alone is not enough
    b.promote(epoch=3, force=True, accept_data_loss=True)
    assert b.status().role is Role.PRIMARY


def test_both_sides_changing_while_apart_is_split_brain(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    a.disconnect()
    a.write(1)
    b.promote(epoch=5)  # b does not know it missed a write
    with pytest.raises(SplitBrain) as info:
        a.connect()
    assert info.value.local["current"] != info.value.peer["current"]
    assert a.status().connection is ConnState.STANDALONE  # persisted, not lost
    assert b.status().connection is ConnState.STANDALONE
    with pytest.raises(ReplicationError, match="a1 is primary"):
        a.resolve_discard_local()
    a.demote()
    a.resolve_discard_local()
    assert a.status().connection is ConnState.CONNECTING  # b is still StandAlone
    b.connect()
    s = a.status()
    assert (s.connection, s.disk, s.peer_role) == (
        ConnState.CONNECTED, DiskState.UP_TO_DATE, Role.PRIMARY,
    )  # fmt: skip


def test_reconnect_after_one_sided_change_resyncs(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    a.disconnect()
    a.write(8192)
    b.outdate()
    a.connect()
    assert b.status().disk is DiskState.UP_TO_DATE
    assert a.status().out_of_sync_bytes == 0
    with pytest.raises(ReplicationError, match="cannot outdate the primary a1"):
        a.outdate()


def test_down_is_refused_while_primary_and_up_is_idempotent(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    with pytest.raises(ReplicationError, match="refusing to take down a primary"):
        a.down()
    b.down()
    assert b.status().disk is DiskState.DISKLESS
    assert a.status().connection is ConnState.CONNECTING
    b.up()
    b.up()
    assert a.status().connection is ConnState.CONNECTED
    a.disconnect()
    with pytest.raises(ReplicationError, match="verify needs a connection"):
        a.verify()
    a.connect()
    assert a.verify().regions_checked == VOLUME.size // VOLUME.pyrepl.region_size


def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    a, _ = pair(tmp_path)
    a.status()
    a.path.write_text("{not json")
    with pytest.raises(ReplicationError, match=r"sim state .* is unreadable"):
        a.status()


def test_state_is_json_an_operator_can_read(tmp_path: Path) -> None:
    a, _ = pair(tmp_path)
    a.demote()
    state = json.loads(a.path.read_text())
    assert state["replicas"]["a1"]["role"] == "secondary"


def test_replica_must_exist_on_the_node(tmp_path: Path) -> None:
    with pytest.raises(ReplicationError, match="no replica on node c1"):
        SimReplicator(VOLUME, Node("c1"), Environment(base_dir=tmp_path))
