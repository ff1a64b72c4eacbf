"""build_environment: runners per node, hypervisors per site, replicators per replica."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from drorch.envbuild import (
    EnvironmentBuildError,
    SshSettings,
    build_environment,
    build_environment_report,
)
from drorch.model.loader import load_cluster
from drorch.model.types import Cluster, Hypervisors, Node, Site
from drorch.remote.local import LocalRunner
from drorch.remote.ssh import SSHRunner
from drorch.replication.base import Role
from drorch.replication.sim import SimReplicator
from drorch.testing.clock import FakeClock


@pytest.fixture
def lab(tmp_path: Path, repo_root: Path) -> Cluster:
    shutil.copy(repo_root / "lab" / "sim.yaml", tmp_path / "sim.yaml")
    return load_cluster(tmp_path / "sim.yaml")


def test_sim_lab_environment(lab: Cluster, tmp_path: Path) -> None:
    clock = FakeClock()
    env = build_environment(lab, tmp_path, clock)
    try:
        assert env.clock is clock
        assert env.base_dir == tmp_path.resolve()
        assert set(env.runners) == {"a1", "b1"}
        assert all(isinstance(r, LocalRunner) for r in env.runners.values())
        assert env.runner("a1").run(["pwd"]).stdout.strip() == str(tmp_path.resolve())
        assert set(env.hypervisors) == {"A", "B"}
        assert env.hypervisor("A").state("drorch-web").value == "running"
        assert set(env.replicators) == {
            ("appdata", "a1"), ("appdata", "b1"), ("dbdata", "a1"), ("dbdata", "b1"),
        }  # fmt: skip
        rep = env.replicators[("dbdata", "a1")]
        assert isinstance(rep, SimReplicator)
        assert rep.status().role is Role.PRIMARY  # A is the primary site
        assert rep.path.parent == tmp_path.resolve() / ".drorch-state" / "replication"
    finally:
        env.close()


def test_remote_nodes_get_an_ssh_runner_without_connecting(lab: Cluster, tmp_path: Path) -> None:
    site_b = Site("B", (Node("b1", "ops@192.0.2.20:2222"),))
    cluster = dataclasses.replace(lab, sites=(lab.sites[0], site_b))
    settings = SshSettings(key_filename="/etc/drorch/id_ed25519", known_hosts=str(tmp_path / "kh"))
    env = build_environment(cluster, tmp_path, FakeClock(), ssh=settings)
    try:
        runner = env.runner("b1")
        assert isinstance(runner, SSHRunner)
        assert (runner.target.user, runner.target.host, runner.target.port) == (
            "ops", "192.0.2.20", 2222,
        )  # fmt: skip
        assert runner.connect_attempts == 0  # lazily connected on the first command
        assert not runner.accept_new
    finally:
        env.close()


def test_broken_driver_is_reported_not_fatal(lab: Cluster, tmp_path: Path) -> None:
    cluster = dataclasses.replace(lab, hypervisor=Hypervisors(driver="vmware"))
    env, problems = build_environment_report(cluster, tmp_path)
    env.close()
    assert [p.what for p in problems[:2]] == ["hypervisor A", "hypervisor B"]
    assert "KeyError" in problems[0].message
    with pytest.raises(EnvironmentBuildError, match="hypervisor A: KeyError"):
        build_environment(cluster, tmp_path)
