"""The operator's path end to end: the lab's generated cluster config, loaded by the real
loader, and `drorch vm migrate` / `drorch vm list` as subprocesses against the lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drorch.lab.cluster_config import lab_cluster_yaml
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

    moved = drorch("vm", "migrate", g.name, "--to", "siteB", "-c", str(config), "--format", "json")
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
    g.wait_heartbeat(above=g.wait_heartbeat())
