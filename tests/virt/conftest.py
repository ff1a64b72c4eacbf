"""Fixtures of the virt tests: a two-site cluster and simulated hypervisors on a FakeClock."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.environment import Environment
from drorch.model.types import VM, Cluster, Hypervisors, Node, Site
from drorch.testing.clock import FakeClock
from drorch.virt.sim import SimHypervisor


def two_site_cluster(*vms: VM, bandwidth_mibps: float = 1000.0) -> Cluster:
    return Cluster(
        name="lab",
        sites=(Site("A", (Node("a1"),)), Site("B", (Node("b1"),))),
        primary_site="A",
        vms=vms,
        hypervisor=Hypervisors(driver="sim", state_dir="state", bandwidth_mibps=bandwidth_mibps),
    )


def sim_pair(cluster: Cluster, env: Environment) -> tuple[SimHypervisor, SimHypervisor]:
    a, b = cluster.sites
    return SimHypervisor(cluster, a, env, speedup=1.0), SimHypervisor(cluster, b, env, speedup=1.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def env(tmp_path: Path, clock: FakeClock) -> Environment:
    return Environment(clock=clock, base_dir=tmp_path)
