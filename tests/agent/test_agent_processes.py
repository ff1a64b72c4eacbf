"""Two real `drorch agent run` processes on loopback (one per site, the simulated lab's
resources, membership over real mutual TLS, soft watchdogs as real processes): they see
each other, maintenance disarms, a kill -9 of A's agent fences A through its watchdog,
and B, without a witness to break the tie, takes nothing over and says why."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from drorch.quorum.tls import generate_self_signed
from tests.ports import free_port_block


def _drorch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drorch", *args], capture_output=True, text=True, timeout=60, env=env
    )


def _until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def lab(tmp_path: Path, repo_root: Path) -> Iterator[dict[str, Any]]:
    data = yaml.safe_load((repo_root / "lab" / "sim.yaml").read_text())
    data.pop("witness")
    for site in data["sites"].values():
        for node in site["nodes"]:
            generate_self_signed(node["name"], tmp_path / "agents")
            node["agent_cert"] = f"agents/{node['name']}.crt"
    data["agent"] = {"port": free_port_block(2), "heartbeat": "200ms", "member_timeout": "1s"}
    data["fencing"].update({"watchdog_timeout": "2s", "margin": "1s"})
    cfg = tmp_path / "lab.yaml"
    cfg.write_text(yaml.safe_dump(data))
    env = {**os.environ, "DRORCH_STATE_DIR": str(tmp_path / "state")}
    procs: dict[str, subprocess.Popen[str]] = {}
    for node in ("a1", "b1"):
        with open(tmp_path / f"{node}.log", "w") as log:  # the child keeps its own copy
            procs[node] = subprocess.Popen(
                [sys.executable, "-m", "drorch", "agent", "run", "-c", str(cfg), "--node", node],
                env=env,
                stderr=log,
                text=True,
            )
    info = {"cfg": cfg, "env": env, "procs": procs, "tmp": tmp_path}
    try:
        yield info
    finally:
        pids = set()
        for node in ("a1", "b1"):
            st = _status_or_none(info, node)
            if st and st.get("watchdog", {}).get("pid"):
                pids.add(int(st["watchdog"]["pid"]))
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        for pid in pids:  # soft watchdogs left behind by a killed agent
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _status_or_none(lab: dict[str, Any], node: str) -> dict[str, Any] | None:
    done = _drorch(
        lab["env"], "agent", "status", "-c", str(lab["cfg"]), "--node", node, "--format", "json"
    )
    if done.returncode != 0:
        return None
    return dict(json.loads(done.stdout))


def _vm_state(lab: dict[str, Any], vm: str, site: str) -> str:
    done = _drorch(lab["env"], "status", "-c", str(lab["cfg"]), "--format", "json")
    rows = {r["vm"]: r for r in json.loads(done.stdout)["vms"]}
    return str(rows[vm][site])


def test_two_agents_membership_maintenance_and_self_fence(lab: dict[str, Any]) -> None:
    def both_members() -> bool:
        st = [_status_or_none(lab, n) for n in ("a1", "b1")]
        return all(s and s.get("members") == ["a1", "b1"] and s["watchdog"]["fed"] for s in st)

    _until(both_members, 30, "both agents to see each other and feed their watchdogs")
    a = _status_or_none(lab, "a1")
    assert a is not None
    assert a["quorum"] == {"held": True, "reason": "majority: 2 of 2 nodes are members"}
    assert a["watchdog"]["armed"] and a["watchdog"]["device"] == "soft"
    assert _vm_state(lab, "db", "A") == "running"

    on = _drorch(lab["env"], "maintenance", "on", "-c", str(lab["cfg"]), "--node", "a1")
    assert on.returncode == 0 and "maintenance ON" in on.stdout
    _until(
        lambda: not (_status_or_none(lab, "a1") or {}).get("watchdog", {}).get("armed", True),
        10,
        "disarm",
    )
    off = _drorch(lab["env"], "maintenance", "off", "-c", str(lab["cfg"]), "--node", "a1")
    assert off.returncode == 0
    _until(
        lambda: (_status_or_none(lab, "a1") or {}).get("watchdog", {}).get("armed", False),
        10,
        "re-arm",
    )

    a = _status_or_none(lab, "a1")
    assert a is not None
    killed_at = time.monotonic()
    lab["procs"]["a1"].send_signal(signal.SIGKILL)  # the agent dies; its watchdog does not
    _until(lambda: _vm_state(lab, "db", "A") != "running", 15, "A's watchdog to fence db")
    fenced_after = time.monotonic() - killed_at
    assert fenced_after < 2.0 + 8.0, fenced_after
    log = (lab["tmp"] / "state").glob("softdog-*-a1.log")
    record = json.loads(next(iter(log)).read_text().splitlines()[-1])
    assert record["event"] == "fired" and record["commands"][0]["rc"] == 0

    def b_sees_a_lost() -> bool:
        b = _status_or_none(lab, "b1")
        return bool(b) and b["members"] == ["b1"] and "has no quorum" in b["takeover"]["reason"]

    _until(b_sees_a_lost, 15, "B to see A lost")
    b = _status_or_none(lab, "b1")
    assert b is not None and b["takeover"]["action"] == "none"
    assert b["takeover"]["reason"].endswith(
        "has no quorum: exactly half (1 of 2 nodes) and no witness is configured to break the tie"
    )
    assert _vm_state(lab, "db", "B") != "running", "B started db without quorum"

    lab["procs"]["b1"].send_signal(signal.SIGTERM)
    assert lab["procs"]["b1"].wait(timeout=15) == 0
    assert not list((lab["tmp"] / "state").glob("softdog-*-b1.log")), "a clean stop fenced B"
