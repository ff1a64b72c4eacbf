"""build_environment with a node reached over SSH (the real sshd from conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.envbuild import SshSettings, build_environment
from drorch.model.loader import load_cluster
from drorch.remote.base import RunnerConnectionError
from drorch.remote.ssh import SSHRunner
from tests.sshd_server import Sshd


def _cluster_file(tmp_path: Path, repo_root: Path, sshd: Sshd) -> Path:
    text = (repo_root / "lab" / "sim.yaml").read_text()
    marker = "      - name: b1\n        address: local\n"
    assert marker in text
    text = text.replace(marker, f"      - name: b1\n        address: {sshd.target}\n")
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return path


def test_remote_node_runs_commands_over_ssh(sshd: Sshd, tmp_path: Path, repo_root: Path) -> None:
    cluster = load_cluster(_cluster_file(tmp_path, repo_root, sshd))
    ssh = SshSettings(key_filename=str(sshd.client_key), known_hosts=str(sshd.known_hosts))
    env = build_environment(cluster, tmp_path, ssh=ssh)
    try:
        runner = env.runner("b1")
        assert isinstance(runner, SSHRunner)
        assert runner.run(["sh", "-c", "echo $((6 * 7))"]).stdout == "42\n"
        assert env.runner("a1").run(["echo", "local"]).stdout == "local\n"
    finally:
        env.close()


def test_unknown_host_key_from_the_default_settings_is_refused(
    sshd: Sshd, tmp_path: Path, repo_root: Path
) -> None:
    cluster = load_cluster(_cluster_file(tmp_path, repo_root, sshd))
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    ssh = SshSettings(key_filename=str(sshd.client_key), known_hosts=str(empty))
    env = build_environment(cluster, tmp_path, ssh=ssh)
    try:
        with pytest.raises(RunnerConnectionError, match="is not in known_hosts"):
            env.runner("b1").run(["true"])
    finally:
        env.close()
