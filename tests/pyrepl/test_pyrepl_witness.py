"""pyrepl and the witness, all real: `drorch repl serve` daemons, a real `drorch quorumd`
on loopback (mutual TLS, pinned certs), and the CLI as a user runs it.

- `repl fence-peer`: exit 0 only once the witness has recorded the outdate; 3 when this
  site does not hold the lease; 1 when the witness is down.
- `repl promote -c CONFIG --node N`: refused (exit 3) while the witness marks this copy
  outdated, allowed with --force --accept-data-loss; the epoch is the witness grant's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from drorch.quorum.client import QuorumConnection
from tests.drbd.conftest import QuorumDaemon
from tests.drbd.conftest import quorum_daemon as quorum_daemon  # the fixture
from tests.pyrepl.conftest import REPO, ServeProcess

Start = Callable[..., ServeProcess]


def cluster_file(tmp_path: Path, daemon: QuorumDaemon, site: str, port: int | None = None) -> Path:
    path = tmp_path / f"cluster-{site}.yaml"
    path.write_text(
        "cluster: c1\n"
        "primary_site: A\n"
        "sites:\n"
        "  A:\n    nodes:\n      - {name: a1, address: local}\n"
        "  B:\n    nodes:\n      - {name: b1, address: local}\n"
        "witness:\n"
        f"  address: 127.0.0.1:{port or daemon.port}\n"
        f'  fingerprint: "{daemon.fingerprint}"\n'
        f"  cert: {daemon.cert(site)}\n"
        f"  key: {daemon.key(site)}\n"
        "volumes:\n"
        "  - name: vol\n    driver: pyrepl\n    mode: sync\n    size: 4MiB\n    port: 7789\n"
        f"    paths: {{a1: {tmp_path}/a.img, b1: {tmp_path}/b.img}}\n"
    )
    return path


def drorch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drorch", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def _view(daemon: QuorumDaemon, site: str) -> QuorumConnection:
    conn = QuorumConnection(
        f"127.0.0.1:{daemon.port}",
        daemon.fingerprint,
        daemon.cert(site),
        daemon.key(site),
        "c1",
        site,
        f"{site.lower()}1",
    )
    conn.connect()
    return conn


def hold(daemon: QuorumDaemon, site: str) -> QuorumConnection:
    conn = QuorumConnection(
        f"127.0.0.1:{daemon.port}",
        daemon.fingerprint,
        daemon.cert(site),
        daemon.key(site),
        "c1",
        site,
        f"{site.lower()}1",
    )
    conn.connect()
    assert conn.heartbeat(1, want=True, nodes=1).granted
    return conn


def test_fence_peer_hook_exit_codes(
    quorum_daemon: QuorumDaemon,
    tmp_path: Path,
) -> None:
    a_yaml = cluster_file(tmp_path, quorum_daemon, "A")
    hook = ["repl", "fence-peer", "-c", str(a_yaml), "--volume", "vol", "--node", "a1"]
    nobody = drorch(*hook)
    assert nobody.returncode == 3, nobody.stderr
    assert "does not hold the quorum lease (holder: none" in nobody.stderr
    with hold(quorum_daemon, "A") as a:
        recorded = drorch(*hook)
        assert recorded.returncode == 0, recorded.stderr
        assert "only site A's copy of vol is current since epoch 1" in recorded.stdout
        assert a.heartbeat(2, want=True, nodes=1).outdated == ()
        assert '"vol": {' in (quorum_daemon.folder / "quorumd.state").read_text()
        unfence = ["repl", "unfence-peer", "-c", str(a_yaml), "--volume", "vol", "--node", "a1"]
        cleared = drorch(*unfence)
        assert cleared.returncode == 0, cleared.stderr
        assert "cleared its record (epoch 1)" in cleared.stdout
        assert '"vol": {' not in (quorum_daemon.folder / "quorumd.state").read_text()
    b_yaml = cluster_file(tmp_path, quorum_daemon, "B")
    b_unfence = drorch("repl", "unfence-peer", "-c", str(b_yaml), "--volume", "vol", "--node", "b1")
    assert b_unfence.returncode == 3 and "not_holder" in b_unfence.stderr
    unknown = drorch("repl", "fence-peer", "-c", str(a_yaml), "--volume", "nope", "--node", "a1")
    assert unknown.returncode == 2 and "nope: no such volume" in unknown.stderr
    down_yaml = cluster_file(tmp_path, quorum_daemon, "A", port=1)
    down = drorch("repl", "fence-peer", "-c", str(down_yaml), "--volume", "vol", "--node", "a1")
    assert down.returncode == 1 and "cannot ask the witness" in down.stderr
    assert "Traceback" not in down.stderr


def test_promote_of_a_copy_the_witness_marks_outdated(
    quorum_daemon: QuorumDaemon,
    tmp_path: Path,
    processes: Start,
) -> None:
    """A primary (sync) and B secondary, in sync. A's hook records B outdated; A dies.
    B's disk says UpToDate, yet `promote -c` refuses; forced, it promotes at epoch 2."""
    a_proc = processes("a", "primary")
    b_proc = processes("b", "secondary", peer=a_proc.listen)
    a_yaml = cluster_file(tmp_path, quorum_daemon, "A")
    b_yaml = cluster_file(tmp_path, quorum_daemon, "B")
    with hold(quorum_daemon, "A") as a:
        hook = drorch("repl", "fence-peer", "-c", str(a_yaml), "--volume", "vol", "--node", "a1")
        assert hook.returncode == 0, hook.stderr
        a.release()
    a_proc.kill9()
    promote = ["repl", "promote", "--yes", "--control", str(b_proc.control), "-c", str(b_yaml)]
    promote += ["--node", "b1", "--format", "json"]
    with hold(quorum_daemon, "B"):
        refused = drorch(*promote)
        assert refused.returncode == 3, refused.stderr
        assert "vol at B is outdated since epoch 1: A wrote alone" in refused.stderr
        assert b_proc.status()["role"] == "secondary"
        forced = drorch(*promote, "--force", "--accept-data-loss")
        assert forced.returncode == 0, forced.stderr
        assert "forced past: vol at B is outdated since epoch 1" in forced.stderr
        # B's copy is the current one now: A's copy, should it return, is the outdated one
        assert "now records only B's copy of vol as current (since epoch 2)" in forced.stderr
        with _view(quorum_daemon, "A") as a_view:
            assert a_view.heartbeat(1, want=False, nodes=1).outdated == ("vol",)
    status = b_proc.status()
    assert (status["role"], status["epoch"]) == ("primary", 2), json.dumps(status)
