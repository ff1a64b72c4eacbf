"""observe(): environment -> snapshot, with what cannot be observed reported, not raised."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from drorch.decide.plan import plan_failover
from drorch.environment import Environment
from drorch.model.loader import load_cluster
from drorch.model.types import Cluster
from drorch.observe import observe
from drorch.replication.sim import SimReplicator
from drorch.testing.clock import FakeClock
from drorch.testing.fake_hypervisor import FakeHypervisor, fake_domain_xml


@pytest.fixture
def lab(tmp_path: Path, repo_root: Path) -> Cluster:
    shutil.copy(repo_root / "lab" / "sim.yaml", tmp_path / "sim.yaml")
    return load_cluster(tmp_path / "sim.yaml")


def env_with(lab: Cluster, tmp_path: Path, *, lose_a: bool) -> Environment:
    env = Environment(clock=FakeClock(start=1_800_000_000.0), base_dir=tmp_path)
    a, b = FakeHypervisor("A"), FakeHypervisor("B")
    for vm in lab.vms:
        a.define(fake_domain_xml(vm.domain))
        a.start(vm.domain)
    a.unreachable = lose_a
    env.hypervisors = {"A": a, "B": b}
    for vol in lab.volumes:
        for node in vol.paths:
            if lose_a and node.startswith("a"):
                continue  # the replicas at A cannot be asked any more
            _, n = lab.node(node)
            env.replicators[(vol.name, node)] = SimReplicator(vol, n, env, primary_node="a1")
    return env


def test_healthy_sites_are_observed(lab: Cluster, tmp_path: Path) -> None:
    obs = observe(lab, env_with(lab, tmp_path, lose_a=False))
    snap = obs.snapshot
    assert snap.now == 1_800_000_000.0
    assert snap.reachable == {"A": True, "B": True}
    assert snap.unobserved == ()
    assert snap.vm_state("drorch-web", "A") == "running"
    assert snap.vm_state("drorch-web", "B") == "undefined"
    assert snap.replica("appdata", "A") is not None
    assert snap.replica("appdata", "A").role == "primary"  # type: ignore[union-attr]
    assert obs.replication[("appdata", "b1")]["disk"] == "UpToDate"


def test_a_lost_site_is_reported_and_failover_becomes_possible(
    lab: Cluster, tmp_path: Path
) -> None:
    snap = observe(lab, env_with(lab, tmp_path, lose_a=True)).snapshot
    assert snap.reachable == {"A": False, "B": True}
    assert "replication appdata@a1: no replicator configured" in snap.unobserved
    assert any(p.startswith("VM web at A: SiteUnreachable") for p in snap.unobserved)
    plan = plan_failover(snap, "B")
    assert plan.runnable, plan.blockers
    assert [s.action.value for s in plan.steps][:4] == [
        "confirm-fenced", "wait-takeover", "promote", "promote",
    ]  # fmt: skip
    assert not plan.needs_data_loss_ack  # B's replicas were in sync when A was lost
