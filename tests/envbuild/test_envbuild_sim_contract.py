"""SimReplicator passes the shared Replicator contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest

from drorch.environment import Environment
from drorch.model.types import Driver, Node, ReplicationMode, Volume
from drorch.replication.base import Replicator
from drorch.replication.sim import SimReplicator
from drorch.testing.contract_replicator import ReplicatorContract, ReplicatorPair

VOLUME = Volume(
    "r0", Driver.PYREPL, ReplicationMode.SYNC, 4 * 2**20, 7789,
    MappingProxyType({"a1": "/srv/a.img", "b1": "/srv/b.img"}),
)  # fmt: skip


def _write(rep: Replicator) -> None:
    assert isinstance(rep, SimReplicator)
    if rep.status().role.value != "primary":
        rep.promote(force=True, accept_data_loss=True)
    rep.write(4096)


class TestSimReplicatorContract(ReplicatorContract):
    @pytest.fixture
    def pair(self, tmp_path: Path) -> Iterator[ReplicatorPair]:
        env = Environment(base_dir=tmp_path)
        a = SimReplicator(VOLUME, Node("a1"), env, primary_node="a1")
        b = SimReplicator(VOLUME, Node("b1"), env, primary_node="a1")
        yield ReplicatorPair(primary=a, secondary=b, diverge=_write, settle_timeout=2.0)


def test_a_new_primary_at_an_epoch_already_seen_is_stale_as_with_pyrepl(tmp_path: Path) -> None:
    """Epochs are fencing tokens: pyrepl refuses a new primary at an epoch it has seen,
    equal included, and so does the sim (it accepted equal, which hid a rollback that
    re-promoted the demoted site at its old epoch). A second primary joining a primary
    (two primaries allowed) shares its epoch, as pyrepl's does."""
    from drorch.replication.base import StaleEpoch

    env = Environment(base_dir=tmp_path)
    a = SimReplicator(VOLUME, Node("a1"), env, primary_node="a1")
    b = SimReplicator(VOLUME, Node("b1"), env, primary_node="a1")
    a.demote()
    b.promote(epoch=3)
    b.demote()
    with pytest.raises(StaleEpoch, match="already seen"):
        a.promote(epoch=3)
    assert a.status().role.value == "secondary"
    a.promote(epoch=4)
    b.allow_two_primaries()
    b.promote(epoch=4)  # joins the primary at its epoch
    assert b.status().role.value == "primary"
