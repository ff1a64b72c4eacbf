"""`drorch lab demo` end to end on its own lab: up, the hurricane migration to B, the
weekly drill back, site A killed (B's agent takes over, after takeover_wait and within
its target; RPO 0), and the failback to A, after which the whole cluster is as `lab up`
made it and a second `lab up` restarts nothing. Every phase passes; no agent
self-fences at any point (the failback's move back to A once made A's restarted agent
fence itself: the WAN proxy had swallowed B's membership link, so A never saw B); no
acknowledged counter value is lost, and the live moves miss no heartbeat. About 80 s
with one 128 MiB TCG guest. (It replaced a separate cold-failover test on a lab of its
own, which repeated the kill-site phase and cost the lab suite 30 s.)"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from drorch.cli.main import cli
from drorch.lab.faults import namespace_pids
from tests.virt_lab.conftest import session_lock

pytestmark = pytest.mark.lab

OPTS = ["--name", "pytest-demo", "--prefix", "dm", "--subnet", "10.77.66"]
TAKEOVER_WAIT = 9.0  # lease_timeout 6 s + switch_delay 3 s in the generated file


def lab(*args: str) -> str:
    result = CliRunner().invoke(cli, ["lab", *args, *OPTS])
    assert result.exit_code == 0, result.output
    return result.stdout


def parts() -> dict[str, dict[str, Any]]:
    status = json.loads(lab("status", "--format", "json"))
    return {row["part"]: row for row in status.get("cluster", [])}


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
        # the automatic takeover waited takeover_wait (lease 6 s + switch delay 3 s in the
        # generated file), and no longer than the target allows
        (cold,) = (f for p, f in figures.items() if p.startswith("cold failover"))
        assert isinstance(cold["rto_s"], float) and cold["rto_s"] >= TAKEOVER_WAIT, cold
        assert met["automatic-failover RTO"] is True
        events = json.loads(lab("events", "--format", "json"))
        assert {"kind": "kill-site", "target": "A"}.items() <= next(
            e for e in events if e["kind"] == "kill-site"
        ).items(), events
        # the whole cluster after the failback, and `lab up` again restarts nothing
        first = parts()
        for name in ("wan-proxy", "quorumd", "agent-siteA", "agent-siteB"):
            assert first[name]["pid"] and first[name]["state"] in ("running", "no impairment")
        assert first["repl-vm1-disk@a1"]["state"] == "primary, UpToDate, Connected"
        assert first["repl-vm1-disk@b1"]["state"] == "secondary, UpToDate, Connected"
        assert first["guest vm1"]["where"] == "siteA"
        assert first["quorumd"]["where"] == "dmwitness"
        lab("up", "--vms", "1", "--mode", "sync")
        again = parts()
        assert {k: v["pid"] for k, v in again.items()} == {k: v["pid"] for k, v in first.items()}
        print(json.dumps(report["measurements"], indent=1))
    finally:
        CliRunner().invoke(cli, ["lab", "down", *OPTS])
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not re.search(r"^dm", names, re.M), names
    for ns in ("dmsiteA", "dmsiteB", "dmwitness", "dmwan"):
        assert namespace_pids(ns) == []
