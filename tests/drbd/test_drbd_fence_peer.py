"""The fence-peer handler: pure decisions, and once against a real quorum daemon."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from drorch.model.types import Cluster, Witness
from drorch.quorum.client import QuorumConnection, Vote
from drorch.quorum.fence import OutdateAnswer
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
from tests.drbd.test_drbd_cli import fake_env  # noqa: F401  # the fixture, shared
from tests.ports import free_port

CTX = FenceContext("r0", "a1", "A", "b1", "B")


def V(granted: bool, epoch: int, holder: str | None) -> Vote:
    return Vote(1, granted, epoch, holder, 3000)


@pytest.mark.parametrize(
    ("answer", "error", "code", "reason"),
    [
        (
            OutdateAnswer(V(True, 7, "A"), recorded=7),
            None,
            PEER_OUTDATED,
            "site A holds quorum (epoch 7) and the witness recorded durably that only "
            "site A's copy is current since epoch 7: site B is Outdated",
        ),
        # holding the lease is not enough: without the durable record nobody is outdated
        (OutdateAnswer(V(True, 7, "A")), None, UNDECIDED, "has recorded no outdate"),
        (
            OutdateAnswer(V(True, 7, "A"), refused="not_holder: lapsed"),
            None,
            UNDECIDED,
            "the witness did not record the outdate (not_holder: lapsed)",
        ),
        (OutdateAnswer(V(False, 8, "B")), None, PEER_IS_PRIMARY, "site B holds quorum (epoch 8)"),
        (
            OutdateAnswer(V(False, 3, "A")),
            None,
            UNDECIDED,
            "recorded holder but its lease is not live",
        ),
        (OutdateAnswer(V(False, 0, None)), None, UNDECIDED, "no site holds quorum (epoch 0)"),
        (None, "QuorumUnavailable: refused", UNDECIDED, "cannot ask the witness"),
    ],
)
def test_decisions(answer: OutdateAnswer | None, error: str | None, code: int, reason: str) -> None:
    decision = decide_fence_peer(CTX, answer, error)
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
        with connect(quorum_daemon, "B") as peer:
            assert peer.heartbeat(1, want=False, nodes=1).outdated == ()
            a = run_fence_peer(cluster_for(quorum_daemon, "A"), env, node="a1")
            assert a.exit_code == PEER_OUTDATED, a.reason
            assert "site A holds quorum (epoch 1)" in a.reason
            # the record is on the witness: B's copy of r0 is outdated, as B sees it
            assert peer.heartbeat(2, want=False, nodes=1).outdated == ("r0",)
        state = (quorum_daemon.folder / "quorumd.state").read_text()
        assert '"r0": {' in state and '"site": "A"' in state
        b_env = {"DRBD_RESOURCE": "r0", "DRBD_PEER_NODE_ID": "0"}
        b = run_fence_peer(cluster_for(quorum_daemon, "B"), b_env, node="b1")
        assert b.exit_code == PEER_IS_PRIMARY, b.reason


def lab_with_witness(tmp_path: Path, daemon: QuorumDaemon, site: str) -> Path:
    """lab/drbd.yaml as cluster c1, its witness the real daemon, with `site`'s cert."""
    from tests.drbd.test_drbd_cli import LAB

    cluster_yaml = tmp_path / f"cluster-{site}.yaml"
    text = LAB.read_text().replace("cluster: drbd-lab", "cluster: c1")
    text = text.replace("127.0.0.1:7405", f"127.0.0.1:{daemon.port}")
    text = text.replace(
        '"sha256:0000000000000000000000000000000000000000000000000000000000000000"',
        f'"{daemon.fingerprint}"',
    )
    text = text.replace("/etc/drorch/site.crt", str(daemon.cert(site)))
    text = text.replace("/etc/drorch/site.key", str(daemon.key(site)))
    cluster_yaml.write_text(text)
    return cluster_yaml


def test_real_drbdadm_runs_the_rendered_handler_against_a_real_daemon(
    quorum_daemon: QuorumDaemon, tmp_path: Path
) -> None:
    """The whole chain as DRBD would drive it: the kernel's usermode helper call
    `drbdadm fence-peer r0` (real drbdadm, hostname a1) runs the handler line from the
    rendered resource file, which asks the real quorum daemon; drbdadm exits with the
    handler's code."""
    from click.testing import CliRunner

    from drorch.cli.main import cli

    cluster_yaml = lab_with_witness(tmp_path, quorum_daemon, "A")
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
    assert "unfence-peer" in rendered.stdout
    assert "r0: a1 (site A) lost b1; site A holds quorum (epoch 1)" in during.stderr


def test_outdated_peer_cannot_be_promoted_without_the_acknowledgement(
    quorum_daemon: QuorumDaemon,
    tmp_path: Path,
    fake_env: dict[str, str],  # noqa: F811  # the imported fixture
) -> None:
    """The link fails, A's handler records the outdate (exit 4: A resumes); A then goes
    away. B, though its DRBD disk claims UpToDate (scripted drbdsetup output) and B now
    holds the lease, is refused: the witness says B's copy is outdated since epoch 1.
    With --force --accept-data-loss it is promoted, at the witness grant's epoch."""
    from tests.drbd.test_drbd_cli import calls, invoke

    env = {"DRBD_RESOURCE": "r0", "DRBD_PEER_NODE_ID": "1"}
    with connect(quorum_daemon, "A") as a:
        assert a.heartbeat(1, want=True, nodes=1).granted
        fenced = run_fence_peer(cluster_for(quorum_daemon, "A"), env, node="a1")
        assert fenced.exit_code == PEER_OUTDATED, fenced.reason
        a.release()  # site A is gone; its lease ends
    b_yaml = lab_with_witness(tmp_path, quorum_daemon, "B")
    primary = ["drbd", "primary", "-c", str(b_yaml), "r0", "--node", "b1"]
    no_lease = invoke(fake_env, *primary)
    assert no_lease.exit_code == 3
    assert "r0 at B is outdated since epoch 1: A wrote alone after the link failed" in (
        no_lease.stderr
    )
    assert "site B does not hold the quorum lease" in no_lease.stderr
    with connect(quorum_daemon, "B") as b:
        assert b.heartbeat(1, want=True, nodes=1).epoch == 2
        refused = invoke(fake_env, *primary)
        assert refused.exit_code == 3, refused.output
        assert "r0 at B is outdated since epoch 1" in refused.stderr
        assert "does not hold" not in refused.stderr
        assert not [c for c in calls(fake_env) if c.startswith("drbdadm primary")]
        forced = invoke(fake_env, *primary, "--force", "--accept-data-loss", "--yes")
        assert forced.exit_code == 0, forced.output
        assert "forced past: r0 at B is outdated since epoch 1" in forced.stderr
        assert [c for c in calls(fake_env) if c.startswith("drbdadm primary")]
        assert "recorded epoch 2" in forced.stdout
        # DRBD's unfence-peer handler (the peer resynced): B, the holder, clears the record
        fake_env["DRBD_RESOURCE"] = "r0"
        cleared = invoke(fake_env, "drbd", "unfence-peer", "-c", str(b_yaml), "--node", "b1")
        assert cleared.exit_code == 0, cleared.output
        assert "record cleared (epoch 2)" in cleared.stderr
        assert b.heartbeat(2, want=True, nodes=1).outdated == ()


def test_handler_fails_while_the_witness_is_down(tmp_path: Path) -> None:
    """Witness unreachable: exit 1 (DRBD keeps I/O suspended and retries); nothing says
    the peer is outdated."""
    cert, key, fp = generate_self_signed("c1-a", tmp_path)
    port = free_port()  # a port nobody listens on
    cluster = replace(
        two_site_cluster(), witness=Witness(f"127.0.0.1:{port}", fp, str(cert), str(key))
    )
    decision = run_fence_peer(cluster, {"DRBD_RESOURCE": "r0"}, node="a1")
    assert decision.exit_code == UNDECIDED
    assert "cannot ask the witness" in decision.reason
