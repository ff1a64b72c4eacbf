"""The fence-peer / unfence-peer hooks against a real `drorch quorumd` (mutual TLS on
loopback), run as the pyrepl daemon runs them: separate processes, separate connections.

The race (found by reading fence_hook.py and quorum/outdates.py): the peer resyncs, the
daemon starts its unfence hook; before that hook's `current` reaches the witness the
link fails again and the fence hook records the outdate, which the witness found already
standing. The late `current` then cleared it: the primary went on writing alone while
the witness said nothing about the peer's copy, so the peer could be promoted over lost
writes without a data-loss acknowledgement. The unfence hook now names the record it
means (DRORCH_OUTDATE_RECORD, as fence_hook.py passes it), and the witness leaves a
record that a newer outdate wrote."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.drbd.conftest import QuorumDaemon
from tests.drbd.conftest import quorum_daemon as quorum_daemon  # the fixture
from tests.pyrepl.conftest import REPO
from tests.pyrepl.test_pyrepl_witness import _view, cluster_file, drorch, hold


def record(fence_peer_stdout: str) -> str:
    """The record serial fence-peer printed ("(record N)"; "1" when it prints none)."""
    found = re.search(r"\(record (\d+)\)", fence_peer_stdout)
    return found.group(1) if found else "1"


def unfence(config: Path, record: str) -> subprocess.CompletedProcess[str]:
    argv = ["repl", "unfence-peer", "-c", str(config), "--volume", "vol", "--node", "a1"]
    return subprocess.run(
        [sys.executable, "-m", "drorch", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "DRORCH_OUTDATE_RECORD": record},
    )


def test_a_late_unfence_leaves_the_record_of_a_newer_outdate(
    quorum_daemon: QuorumDaemon, tmp_path: Path
) -> None:
    a_yaml = cluster_file(tmp_path, quorum_daemon, "A")
    fence = ["repl", "fence-peer", "-c", str(a_yaml), "--volume", "vol", "--node", "a1"]
    with hold(quorum_daemon, "A"), _view(quorum_daemon, "B") as b:
        first = drorch(*fence)  # the link fails
        assert first.returncode == 0, first.stderr
        # the peer resyncs: the unfence hook starts, with the record it knows of; the link
        # fails again before its `current` arrives
        again = drorch(*fence)
        assert again.returncode == 0, again.stderr
        late = unfence(a_yaml, record(first.stdout))
        assert late.returncode == 0, late.stderr
        # the primary writes alone now: B's copy is behind, and the witness must say so
        # (the promotion check at B reads exactly this vote)
        assert b.heartbeat(1, want=False, nodes=1).outdated == ("vol",), late.stdout
        assert "the record stands" in late.stdout
        assert record(again.stdout) != record(first.stdout)
        cleared = unfence(a_yaml, record(again.stdout))
        assert cleared.returncode == 0 and "cleared its record" in cleared.stdout
        assert b.heartbeat(2, want=False, nodes=1).outdated == ()
