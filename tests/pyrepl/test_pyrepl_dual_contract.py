"""PyreplReplicator and the simulated replicator pass the DualPrimary contract."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from drorch.environment import Environment
from drorch.model.types import Node
from drorch.replication.pyrepl.driver import PyreplReplicator
from drorch.replication.sim import SimReplicator
from drorch.testing.contract_replicator import ReplicatorPair
from drorch.testing.contracts import DualPrimaryContract
from tests.envbuild.test_envbuild_sim_contract import VOLUME
from tests.pyrepl.conftest import Cluster
from tests.pyrepl.test_pyrepl_contract import volume


class TestPyreplDualPrimary(DualPrimaryContract):
    @pytest.fixture
    def pair(self, cluster: Cluster, tmp_path: Path) -> Iterator[ReplicatorPair]:
        a, b = cluster.pair(mode="sync")
        env = Environment(base_dir=tmp_path)
        vol = volume(tmp_path)
        primary = PyreplReplicator(vol, Node("n1"), env, control=a.control)
        secondary = PyreplReplicator(vol, Node("n2"), env, control=b.control)
        yield ReplicatorPair(primary, secondary)


class TestSimDualPrimary(DualPrimaryContract):
    @pytest.fixture
    def pair(self, tmp_path: Path) -> Iterator[ReplicatorPair]:
        env = Environment(base_dir=tmp_path)
        a = SimReplicator(VOLUME, Node("a1"), env, primary_node="a1")
        b = SimReplicator(VOLUME, Node("b1"), env, primary_node="a1")
        yield ReplicatorPair(primary=a, secondary=b, settle_timeout=2.0)


class TestPyreplDualPrimaryOverARunner(DualPrimaryContract):
    """Both nodes reached through their CommandRunner (as over SSH): the driver runs
    `drorch repl allow-two-primaries|forbid-two-primaries|promote ... --format json`."""

    @pytest.fixture
    def pair(self, cluster: Cluster, tmp_path: Path) -> Iterator[ReplicatorPair]:
        from drorch.remote.local import LocalRunner

        a, b = cluster.pair(mode="sync")
        bindir = str(Path(sys.executable).parent)
        runner = LocalRunner(env={"PATH": f"{bindir}:{os.environ.get('PATH', '')}"})
        env = Environment(base_dir=tmp_path, runners={"n1": runner, "n2": runner})
        vol = volume(tmp_path)
        primary = PyreplReplicator(vol, Node("n1", address="root@n1"), env, control=a.control)
        secondary = PyreplReplicator(vol, Node("n2", address="root@n2"), env, control=b.control)
        yield ReplicatorPair(primary, secondary)
