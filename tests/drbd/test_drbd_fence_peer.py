"""The fence-peer handler: pure decisions, and once against a real quorum daemon."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from drorch.model.types import Cluster, Witness
from drorch.quorum.client import QuorumConnection
from drorch.quorum.tls import generate_self_signed
from drorch.replication.drbd.fence_peer import (
    PEER_IS_PRIMARY,
    PEER_OUTDATED,
    UNDECIDED,
    FenceContext,
    FenceSetupError,
    decide_fence_peer,
    fence_context,
    run_fence_peer,
)
from tests.drbd.clusters import two_site_cluster
from tests.drbd.conftest import QuorumDaemon

CTX = FenceContext("r0", "a1", "A", "b1", "B")


@dataclass(frozen=True)
class V:
    granted: bool
    epoch: int
    holder: str | None


@pytest.mark.parametrize(
    ("vote", "error", "code", "reason"),
    [
        (V(True, 7, "A"), None, PEER_OUTDATED, "site A holds quorum (epoch 7)"),
        (V(False, 8, "B"), None, PEER_IS_PRIMARY, "site B holds quorum (epoch 8)"),
        (V(False, 3, "A"), None, UNDECIDED, "recorded holder but its lease is not live"),
        (V(False, 0, None), None, UNDECIDED, "no site holds quorum (epoch 0)"),
        (None, "QuorumUnavailable: refused", UNDECIDED, "cannot ask the witness"),
    ],
)
def test_decisions(vote: V | None, error: str | None, code: int, reason: str) -> None:
    decision = decide_fence_peer(CTX, vote, error)
    assert decision.exit_code == code
    assert reason in decision.reason
    assert decision.reason.startswith("r0: a1 (site A) lost b1")


def test_context_from_drbd_environment() -> None:
    cluster = two_site_cluster()
    ctx = fence_context(cluster, {"DRBD_RESOURCE": "r0", "DRBD_PEER_NODE_ID": "0"}, "b1")
    assert ctx == FenceContext("r0", "b1", "B", "a1", "A")
    with pytest.raises(FenceSetupError, match="DRBD_RESOURCE is not set"):
        fence_context(cluster, {}, "a1")
    with pytest.raises(FenceSetupError, match="not a volume"):
        fence_context(cluster, {"DRBD_RESOURCE": "r9"}, "a1")
    with pytest.raises(FenceSetupError, match=r"this node \(zz\) holds no replica"):
        fence_context(cluster, {"DRBD_RESOURCE": "r0"}, "zz")


def test_no_witness_configured_outdates_nobody() -> None:
    decision = run_fence_peer(two_site_cluster(), {"DRBD_RESOURCE": "r0"}, node="a1")
    assert decision.exit_code == UNDECIDED
    assert "no witness is configured" in decision.reason


def test_witness_that_cannot_be_reached(tmp_path: Path) -> None:
    cert, key, fp = generate_self_signed("c1-a", tmp_path)
    witness = Witness("127.0.0.1:1", fp, str(cert), str(key))
    cluster = replace(two_site_cluster(), witness=witness)
    decision = run_fence_peer(cluster, {"DRBD_RESOURCE": "r0"}, node="a1")
    assert decision.exit_code == UNDECIDED
    assert "QuorumUnavailable" in decision.reason


def connect(daemon: QuorumDaemon, site: str) -> QuorumConnection:
    conn = QuorumConnection(
        f"127.0.0.1:{daemon.port}",
        daemon.fingerprint,
        daemon.cert(site),
        daemon.key(site),
        "c1",
        site,
        f"{site.lower()}1",
        timeout=5.0,
    )
    conn.connect()
    return conn


def cluster_for(daemon: QuorumDaemon, site: str) -> Cluster:
    witness = Witness(
        f"127.0.0.1:{daemon.port}",
        daemon.fingerprint,
        str(daemon.cert(site)),
        str(daemon.key(site)),
    )
    return replace(two_site_cluster(), witness=witness)


def test_against_a_real_quorum_daemon(quorum_daemon: QuorumDaemon) -> None:
    env = {"DRBD_RESOURCE": "r0", "DRBD_PEER_NODE_ID": "1"}
    first = run_fence_peer(cluster_for(quorum_daemon, "A"), env, node="a1")
    assert first.exit_code == UNDECIDED and "no site holds quorum" in first.reason
    with connect(quorum_daemon, "A") as holder:
        assert holder.heartbeat(1, want=True, nodes=1).granted
        a = run_fence_peer(cluster_for(quorum_daemon, "A"), env, node="a1")
        assert a.exit_code == PEER_OUTDATED, a.reason
        assert "site A holds quorum (epoch 1)" in a.reason
        b_env = {"DRBD_RESOURCE": "r0", "DRBD_PEER_NODE_ID": "0"}
        b = run_fence_peer(cluster_for(quorum_daemon, "B"), b_env, node="b1")
        assert b.exit_code == PEER_IS_PRIMARY, b.reason


def test_real_drbdadm_runs_the_rendered_handler_against_a_real_daemon(
    quorum_daemon: QuorumDaemon, tmp_path: Path
) -> None:
    """The whole chain as DRBD would drive it: the kernel's usermode helper call
    `drbdadm fence-peer r0` (real drbdadm, hostname a1) runs the handler line from the
    rendered resource file, which asks the real quorum daemon; drbdadm exits with the
    handler's code."""
    from click.testing import CliRunner

    from drorch.cli.main import cli
    from tests.drbd.test_drbd_cli import LAB

    cluster_yaml = tmp_path / "cluster.yaml"
    text = LAB.read_text().replace("cluster: drbd-lab", "cluster: c1")
    text = text.replace("127.0.0.1:7405", f"127.0.0.1:{quorum_daemon.port}")
    text = text.replace(
        '"sha256:0000000000000000000000000000000000000000000000000000000000000000"',
        f'"{quorum_daemon.fingerprint}"',
    )
    text = text.replace("/etc/drorch/site.crt", str(quorum_daemon.cert("A")))
    text = text.replace("/etc/drorch/site.key", str(quorum_daemon.key("A")))
    cluster_yaml.write_text(text)
    rendered = CliRunner().invoke(
        cli,
        [
            "drbd", "render", "-c", str(cluster_yaml), "r0",
            "--config-path", str(cluster_yaml), "--drorch-bin", f"{sys.executable} -m drorch",
        ],
    )  # fmt: skip
    assert rendered.exit_code == 0, rendered.output
    res = tmp_path / "r0.res"
    res.write_text(rendered.stdout)

    def fence_peer() -> subprocess.CompletedProcess[str]:
        script = 'hostname a1 && exec drbdadm -c "$1" fence-peer r0'
        return subprocess.run(
            ["unshare", "-u", "sh", "-c", script, "sh", str(res)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "DRBD_RESOURCE": "r0", "DRBD_PEER_NODE_ID": "1"},
            cwd=Path(__file__).resolve().parents[2],
        )

    before = fence_peer()
    assert before.returncode == UNDECIDED, before.stderr
    assert "no site holds quorum" in before.stderr
    with connect(quorum_daemon, "A") as holder:
        assert holder.heartbeat(1, want=True, nodes=1).granted
        during = fence_peer()
    assert during.returncode == PEER_OUTDATED, during.stderr
    assert "r0: a1 (site A) lost b1; site A holds quorum (epoch 1)" in during.stderr
