"""The operator's path end to end: the lab's generated cluster config, loaded by the real
loader, and `drorch vm migrate` / `drorch vm list` as subprocesses against the lab."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drorch.lab.cluster_config import lab_cluster_yaml
from drorch.lab.processes import live_pid
from drorch.model.loader import load_cluster_with_warnings
from drorch.virt.base import VMState
from tests.virt_lab.conftest import GuestFactory, RunningLab

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]


def drorch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drorch", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_the_generated_config_loads_clean(running_lab: RunningLab, tmp_path: Path) -> None:
    config = tmp_path / "lab.yaml"
    config.write_text(lab_cluster_yaml(running_lab.layout, ["g1", "g2"]))
    cluster, warnings = load_cluster_with_warnings(config)
    assert warnings == []
    assert cluster.hypervisor.driver == "libvirt"
    a_node = cluster.site("siteA").nodes[0]
    assert a_node.libvirt_uri == running_lab.layout.local_uri("siteA")
    assert a_node.migration_uri == running_lab.layout.peer_uri("siteA")
    assert [vm.name for vm in cluster.vms] == ["g1", "g2"]


def test_drorch_vm_migrate_moves_a_lab_guest_with_a_progress_bar(
    running_lab: RunningLab, guest: GuestFactory, tmp_path: Path
) -> None:
    g = guest()
    config = tmp_path / "lab.yaml"
    config.write_text(lab_cluster_yaml(running_lab.layout, [g.name]))

    moved = drorch(
        "vm", "migrate", g.name, "--to", "siteB", "-c", str(config), "--format", "json", "--yes"
    )
    assert moved.returncode == 0, moved.stderr
    report = json.loads(moved.stdout)
    assert report["result"] == "migrated" and report["running_at"] == "siteB"
    assert "pre-copy converged" in report["reason"]
    assert f"migrate {g.name} → siteB [" in moved.stderr  # the progress bar
    assert "done: converged" in moved.stderr
    assert running_lab.b.state(g.name) == VMState.RUNNING

    listed = drorch("vm", "list", "-c", str(config), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["vm"], r["siteA"], r["siteB"]) for r in rows] == [(g.name, "undefined", "running")]
    # the type-3 monitor of the generated config follows the guest's serial log
    before = g.wait_heartbeat()
    beating = drorch(
        "vm", "heartbeat", g.name, "-c", str(config), "--after", str(before), "--timeout", "20s"
    )
    assert beating.returncode == 0, beating.stdout + beating.stderr


def test_drorch_vm_failover_start_boots_the_vm_at_b_after_site_a_lost_it(
    running_lab: RunningLab, guest: GuestFactory, tmp_path: Path
) -> None:
    g = guest()
    config = tmp_path / "lab.yaml"
    config.write_text(lab_cluster_yaml(running_lab.layout, [g.name]))

    refused = drorch("vm", "failover-start", g.name, "--to", "siteB", "-c", str(config))
    assert refused.returncode == 3
    assert "refused: vm-running-elsewhere" in refused.stderr and "at site siteA" in refused.stderr
    assert running_lab.b.state(g.name) == VMState.UNDEFINED

    pid = live_pid(running_lab.layout.run_dir("siteA") / "qemu" / f"{g.name}.pid", "qemu")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # site A's hypervisor loses the VM
    deadline = time.monotonic() + 10
    while running_lab.a.state(g.name) == VMState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
    last = g.wait_heartbeat()

    started = drorch(
        "vm", "failover-start", g.name, "--to", "siteB", "-c", str(config), "--format", "json",
        "--yes",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    report = json.loads(started.stdout)
    assert report["site"] == "siteB" and report["xml_from"] == "site siteA"
    assert report["checked_sites"] == ["siteA"]
    assert running_lab.b.state(g.name) == VMState.RUNNING
    # a fresh boot at B: a second boot banner in the log, then beats after it
    deadline = time.monotonic() + 30
    log = ""
    while time.monotonic() < deadline:
        log = g.serial_log.read_text(errors="replace")
        if log.count("LABVM BOOTED") == 2 and "HEARTBEAT" in log.rsplit("LABVM BOOTED", 1)[1]:
            break
        time.sleep(0.2)
    assert log.count("LABVM BOOTED") == 2, log[-400:]
    assert "HEARTBEAT 1 " in log.rsplit("LABVM BOOTED", 1)[1]
    assert last >= 1
