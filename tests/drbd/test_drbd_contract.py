"""Contract-style tests: the DRBD driver over an emulated two-node resource
(`drorch.testing.fake_drbd`, DRBD's formats and messages), as a connected pair."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drorch.environment import Environment
from drorch.model.types import Node
from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationError,
    Role,
    SplitBrain,
    StaleEpoch,
    UnsafeOperation,
)
from drorch.replication.drbd.driver import DrbdReplicator
from drorch.replication.drbd.ops import DrbdDeviceInUse, DrbdModuleMissing
from drorch.testing.clock import FakeClock
from drorch.testing.contract_replicator import ReplicatorContract, ReplicatorPair
from drorch.testing.contracts import DualPrimaryContract
from drorch.testing.fake_drbd import FakeDrbdPair
from tests.drbd.clusters import two_site_cluster


@pytest.fixture
def pair() -> tuple[FakeDrbdPair, DrbdReplicator, DrbdReplicator]:
    volume = two_site_cluster().volumes[0]
    fake = FakeDrbdPair(volume)
    env = Environment(clock=FakeClock(), runners=dict(fake.runners))
    a = DrbdReplicator(volume, Node("a1"), env)
    b = DrbdReplicator(volume, Node("b1"), env)
    a.up()
    b.up()
    a.promote(1)
    return fake, a, b


def test_connected_primary_secondary(pair) -> None:  # type: ignore[no-untyped-def]
    _, a, b = pair
    sa, sb = a.status(), b.status()
    assert (sa.role, sa.peer_role, sa.connection) == (
        Role.PRIMARY,
        Role.SECONDARY,
        ConnState.CONNECTED,
    )
    assert (sb.role, sb.peer_role, sb.disk) == (Role.SECONDARY, Role.PRIMARY, DiskState.UP_TO_DATE)
    assert sa.epoch == 1 and sa.out_of_sync_bytes == 0


def test_up_and_promote_are_idempotent(pair) -> None:  # type: ignore[no-untyped-def]
    fake, a, _ = pair
    calls = len(fake.nodes["a1"].calls)
    a.up()
    a.promote(1)
    assert [c for c in fake.nodes["a1"].calls[calls:] if c[0] == "drbdadm"] == []


def test_secondary_cannot_promote_while_peer_primary(pair) -> None:  # type: ignore[no-untyped-def]
    _, _, b = pair
    with pytest.raises(ReplicationError, match="the peer is Primary"):
        b.promote(2)


def test_planned_switch(pair) -> None:  # type: ignore[no-untyped-def]
    _, a, b = pair
    a.demote()
    b.promote(2)
    assert (a.status().role, b.status().role) == (Role.SECONDARY, Role.PRIMARY)
    assert b.status().epoch == 2


def test_stale_epoch(pair) -> None:  # type: ignore[no-untyped-def]
    _, a, _ = pair
    with pytest.raises(StaleEpoch):
        a.promote(0)


def test_outdated_disk_needs_force_and_acknowledgement(pair) -> None:  # type: ignore[no-untyped-def]
    fake, a, b = pair
    a.demote()
    b.disconnect()
    fake.nodes["b1"].disk = "Outdated"
    with pytest.raises(UnsafeOperation, match="Outdated, not UpToDate"):
        b.promote(2)
    with pytest.raises(UnsafeOperation):
        b.promote(2, force=True)
    b.promote(2, force=True, accept_data_loss=True)
    assert b.status().role is Role.PRIMARY


def test_split_brain_detected_and_resolved(pair) -> None:  # type: ignore[no-untyped-def]
    _, a, b = pair
    a.disconnect()
    b.disconnect()
    b.promote(2)  # both primary while apart: both start a new generation
    b.connect()  # the peer is StandAlone: b keeps Connecting, no error
    assert b.status().connection is ConnState.CONNECTING
    with pytest.raises(SplitBrain, match="split brain detected"):
        a.connect()
    assert a.status().connection is ConnState.STANDALONE
    assert b.status().connection is ConnState.STANDALONE
    b.demote()
    b.resolve_discard_local()  # b's changes are thrown away
    a.connect()
    sa = a.status()
    assert (sa.connection, sa.peer_disk, sa.role) == (
        ConnState.CONNECTED,
        DiskState.UP_TO_DATE,
        Role.PRIMARY,
    )


def test_disconnect_resync_without_split_brain(pair) -> None:  # type: ignore[no-untyped-def]
    _, a, b = pair
    b.disconnect()
    a.disconnect()
    a.demote()
    a.promote(3)  # only a moved on
    b.connect()
    a.connect()
    assert b.status().connection is ConnState.CONNECTED


def test_verify_in_sync(pair) -> None:  # type: ignore[no-untyped-def]
    _, a, _ = pair
    result = a.verify()
    assert result.out_of_sync == ()
    assert result.regions_checked == two_site_cluster().volumes[0].size // 4096


def test_verify_refused_when_disconnected(pair) -> None:  # type: ignore[no-untyped-def]
    _, a, _ = pair
    a.disconnect()
    with pytest.raises(ReplicationError, match="needs an established connection"):
        a.verify()


def test_down_rules(pair) -> None:  # type: ignore[no-untyped-def]
    fake, a, b = pair
    with pytest.raises(ReplicationError, match="demote it before down"):
        a.down()
    fake.nodes["a1"].held_open = True
    with pytest.raises(DrbdDeviceInUse):
        a.demote()
    fake.nodes["a1"].held_open = False
    a.demote()
    a.down()
    a.down()
    assert a.status().extra["up"] is False
    assert b.status().connection is ConnState.CONNECTING


def test_missing_module(pair) -> None:  # type: ignore[no-untyped-def]
    fake, a, _ = pair
    fake.module_loaded = False
    with pytest.raises(DrbdModuleMissing):
        a.status()


class TestDrbdContractOverEmulatedDrbd(ReplicatorContract):
    """The shared Replicator contract; both nodes' commands go to the DRBD emulation."""

    supports_split_brain_cycle = True

    @pytest.fixture
    def pair(self) -> Iterator[ReplicatorPair]:
        volume = two_site_cluster().volumes[0]
        fake = FakeDrbdPair(volume)
        env = Environment(clock=FakeClock(), runners=dict(fake.runners))
        a = DrbdReplicator(volume, Node("a1"), env)
        b = DrbdReplicator(volume, Node("b1"), env)
        a.up()
        b.up()
        a.promote(1)
        yield ReplicatorPair(primary=a, secondary=b, settle_timeout=2.0)


class TestDrbdDualPrimaryOverEmulatedDrbd(DualPrimaryContract):
    """The shared DualPrimary contract on the DRBD emulation (drbdadm net-options)."""

    @pytest.fixture
    def pair(self) -> Iterator[ReplicatorPair]:
        volume = two_site_cluster().volumes[0]
        fake = FakeDrbdPair(volume)
        env = Environment(clock=FakeClock(), runners=dict(fake.runners))
        a = DrbdReplicator(volume, Node("a1"), env)
        b = DrbdReplicator(volume, Node("b1"), env)
        a.up()
        b.up()
        a.promote(1)
        yield ReplicatorPair(primary=a, secondary=b, settle_timeout=2.0)
