"""`fencing: resource-only` end to end, all real: two `drorch repl serve` processes, a
real `drorch quorumd` on loopback (mutual TLS, pinned certificates), the fence-peer hook
as the daemon runs it (`drorch repl fence-peer`), qemu-io as the NBD client.

- the link fails: the primary freezes, its hook gets the witness to record the peer
  outdated (durably), and writes resume; the primary then dies: the secondary's promotion
  is refused, and allowed with --force --accept-data-loss;
- the link fails while the witness is down: the primary stays frozen, the write is never
  acknowledged, and after the primary dies the secondary holds every acknowledged write.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.drbd.conftest import QuorumDaemon
from tests.drbd.conftest import quorum_daemon as quorum_daemon  # the fixture
from tests.pyrepl.conftest import ServeProcess, wait_until
from tests.pyrepl.test_pyrepl_witness import cluster_file, drorch, hold

Start = Callable[..., ServeProcess]


def qemu_io(proc: ServeProcess, command: str) -> subprocess.Popen[str]:
    host, port = proc.nbd
    return subprocess.Popen(
        ["qemu-io", "-f", "raw", "-c", command, f"nbd://{host}:{port}/vol"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def qemu_write(proc: ServeProcess, pattern: int, offset: int, timeout: float = 30) -> str:
    io = qemu_io(proc, f"write -P {pattern:#x} {offset} 64k")
    out, _ = io.communicate(timeout=timeout)
    assert io.returncode == 0 and "wrote 65536/65536 bytes" in out, out
    return out


def pattern_at(path: Path, offset: int, pattern: int) -> bool:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(65536) == bytes([pattern]) * 65536


def start_pair(processes: Start, tmp_path: Path, hook_yaml: Path) -> tuple[ServeProcess, ...]:
    hook = f"{sys.executable} -m drorch repl fence-peer -c {hook_yaml} --volume vol --node a1"
    b = processes("b", "secondary")
    a = processes("a", "primary", peer=b.listen, extra=("--fence-peer-cmd", hook))
    wait_until(
        "connected",
        lambda: a.status()["connection"] == "Connected" and b.status()["disk"] == "UpToDate",
    )
    return a, b


def cut_link(a: ServeProcess, b: ServeProcess) -> None:
    """The secondary drops the link (nothing travels first): the primary loses its peer."""
    out = b.cli("disconnect", "--control", str(b.control), "--yes")
    assert out.returncode == 0, out.stderr
    wait_until("a loses b", lambda: a.status()["connection"] != "Connected")


def test_link_failure_freezes_until_the_witness_records_then_promotion_is_guarded(
    quorum_daemon: QuorumDaemon, tmp_path: Path, processes: Start
) -> None:
    a_yaml = cluster_file(tmp_path, quorum_daemon, "A")
    b_yaml = cluster_file(tmp_path, quorum_daemon, "B")
    a, b = start_pair(processes, tmp_path, a_yaml)
    with hold(quorum_daemon, "A") as lease:
        qemu_write(a, 0x11, 0)
        assert pattern_at(b.backing, 0, 0x11), "sync: on B when acknowledged"
        cut_link(a, b)
        qemu_write(a, 0x22, 65536)  # acknowledged only after the witness's record
        extra = a.status()["extra"]
        assert extra["io"] == "running" and extra["peer_outdated"] is True
        assert extra["fence_peer"]["exit"] == 0
        assert "fence-peer hook" in extra["resumed"]
        assert "only site A's copy of vol is current" in extra["resumed"]
        log = a.log.read_text()
        assert log.index("I/O frozen") < log.index("I/O resumed")
        assert '"vol": {' in (quorum_daemon.folder / "quorumd.state").read_text()
        lease.release()
    a.kill9()
    assert not pattern_at(b.backing, 65536, 0x22), "written alone: B lacks it"
    promote = ["repl", "promote", "--control", str(b.control), "-c", str(b_yaml), "--node", "b1"]
    with hold(quorum_daemon, "B"):
        unasked = drorch(*promote[:-1], "b1")  # no --yes, no terminal: nothing is done
        assert unasked.returncode == 3, "the witness refusal comes before the question"
        promote.append("--yes")
        refused = drorch(*promote)
        assert refused.returncode == 3, refused.stderr
        assert "vol at B is outdated since epoch 1: A wrote alone" in refused.stderr
        dry = drorch(*promote, "--dry-run")
        assert dry.returncode == 3, "a dry run reports the same refusal"
        assert b.status()["role"] == "secondary"
        forced = drorch(*promote, "--force", "--accept-data-loss")
        assert forced.returncode == 0, forced.stderr
    assert b.status()["role"] == "primary"


def test_link_failure_with_the_witness_down_acknowledges_nothing(
    quorum_daemon: QuorumDaemon, tmp_path: Path, processes: Start
) -> None:
    down = cluster_file(tmp_path, quorum_daemon, "A", port=1)  # nobody answers there
    b_yaml = cluster_file(tmp_path, quorum_daemon, "B")
    a, b = start_pair(processes, tmp_path, down)
    qemu_write(a, 0x11, 0)
    cut_link(a, b)
    pending = qemu_io(a, "write -P 0x33 65536 64k")
    wait_until("frozen", lambda: a.status()["extra"]["io"] == "suspended")
    wait_until(
        "the hook failed at least twice",
        lambda: (a.status()["extra"]["fence_peer"] or {}).get("attempt", 0) >= 2,
    )
    extra = a.status()["extra"]
    assert (
        extra["fence_peer"]["exit"] == 1
        and "cannot ask the witness" in (extra["fence_peer"]["output"])
    )
    assert extra["frozen"]["reason"].startswith("replication link lost")
    time.sleep(0.5)
    assert pending.poll() is None, "the write is not acknowledged while frozen"
    a.kill9()
    out, _ = pending.communicate(timeout=30)
    assert "wrote 65536/65536" not in out, out
    # every write A acknowledged is on B, which nothing marks outdated: it may take over
    assert pattern_at(b.backing, 0, 0x11)
    with hold(quorum_daemon, "B"):
        promoted = drorch(
            "repl", "promote", "--control", str(b.control), "-c", str(b_yaml), "--node", "b1",
            "--dry-run",
        )  # fmt: skip
        assert promoted.returncode == 0 and "would promote" in promoted.stdout, promoted.stdout
        assert b.status()["role"] == "secondary"
        unasked = drorch(
            "repl", "promote", "--control", str(b.control), "-c", str(b_yaml), "--node", "b1"
        )
        assert unasked.returncode == 1 and "not confirmed" in unasked.stderr, unasked.stderr
        assert b.status()["role"] == "secondary"
        promoted = drorch(
            "repl", "promote", "--control", str(b.control), "-c", str(b_yaml), "--node", "b1",
            "--yes",
        )  # fmt: skip
        assert promoted.returncode == 0, promoted.stderr


def test_fence_peer_says_stale_when_the_peers_site_holds_the_lease(
    quorum_daemon: QuorumDaemon, tmp_path: Path
) -> None:
    a_yaml = cluster_file(tmp_path, quorum_daemon, "A")
    with hold(quorum_daemon, "B"):
        out = drorch("repl", "fence-peer", "-c", str(a_yaml), "--volume", "vol", "--node", "a1")
    assert out.returncode == 5, out.stderr  # the daemon then acknowledges nothing more
    assert "holder: B" in out.stderr and "Traceback" not in out.stderr
