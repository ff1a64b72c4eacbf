"""`drorch lab demo` end to end on its own lab: up, the hurricane migration to B, the
weekly drill back, site A killed (B's agent takes over), and the failback to A. Every
phase passes; no agent self-fences at any point (the failback's move back to A once
made A's restarted agent fence itself: the WAN proxy had swallowed B's membership
link, so A never saw B); no acknowledged counter value is lost, and the live moves
miss no heartbeat. About 3 minutes with one 128 MiB TCG guest."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from drorch.cli.main import cli
from drorch.lab.faults import namespace_pids
from tests.virt_lab.conftest import session_lock

pytestmark = pytest.mark.lab

OPTS = ["--name", "pytest-demo", "--prefix", "dm", "--subnet", "10.77.66"]


@pytest.fixture
def demo_lab_lock() -> Iterator[None]:
    """One run of this test per machine at a time (another worktree's or CI's would share
    the `dm` namespaces and tear them down under it)."""
    with session_lock(Path("/tmp/drorch-lab-dm.lock")):
        yield


@pytest.mark.usefixtures("demo_lab_lock")
def test_the_whole_story_without_a_self_fence_or_a_lost_acknowledged_value() -> None:
    try:
        result = CliRunner().invoke(cli, ["lab", "demo", "--format", "json", *OPTS])
        report = json.loads(result.stdout)
        phases = {p["phase"]: p for p in report["phases"]}
        assert [p["ok"] for p in report["phases"]] == [True] * 6, result.output
        assert result.exit_code == 0, result.output
        figures: dict[str, dict[str, object]] = {}
        for row in report["figures"]:
            figures.setdefault(row["phase"], {})[row["figure"]] = row["value"]
        for name, fig in figures.items():
            assert fig.get("self_fences") == 0, (name, fig)
            assert fig.get("acked_values_lost") == 0, (name, fig)
        for name in ("hurricane", "weekly drill", "fail back"):
            (live,) = (f for p, f in figures.items() if p.startswith(name))
            assert live["heartbeats_missing"] == 0 and live["heartbeats_unacked"] == 0, live
        failback = next(p for n, p in phases.items() if n.startswith("fail back"))
        assert "guest heartbeats" in failback["detail"]
        met = {m["measurement"].split(" (")[0]: m["met"] for m in report["measurements"]}
        assert met["self-fences"] is True
        assert met["RPO in acknowledged counter values lost"] is True
        # a sync 4 KiB write through the WAN proxy: at least one round trip of its delay
        assert met["sync write latency"] is True
        latency = next(p for n, p in phases.items() if n.startswith("sync write latency"))
        assert "WAN delay 20 ms" in latency["detail"]
        print(json.dumps(report["measurements"], indent=1))
    finally:
        CliRunner().invoke(cli, ["lab", "down", *OPTS])
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not re.search(r"^dm", names, re.M), names
    for ns in ("dmsiteA", "dmsiteB", "dmwitness", "dmwan"):
        assert namespace_pids(ns) == []
