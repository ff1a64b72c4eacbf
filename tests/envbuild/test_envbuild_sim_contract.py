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
