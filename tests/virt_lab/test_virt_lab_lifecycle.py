"""The lab itself: a second, short-lived lab instance comes up, is idempotent, and goes
down by PID; the guest image holds what the guests need; the `drorch lab` commands."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from drorch.cli.lab_cmd import lab as lab_cli
from drorch.lab.lab import Lab
from drorch.lab.layout import LabLayout
from drorch.lab.processes import cmdline
from drorch.remote.local import LocalRunner
from tests.virt_lab.conftest import RunningLab

LIFE = LabLayout(name="pytest-life", prefix="dl", subnet="10.77.63")


@pytest.mark.lab
def test_lab_up_is_idempotent_and_down_stops_everything_by_pid() -> None:
    lab = Lab(LIFE, LocalRunner())
    try:
        lab.up()
        first = lab.status()
        pids = [s[d] for s in first["sites"] for d in ("libvirtd", "virtlogd")]
        assert all(isinstance(p, int) for p in pids)
        assert first["wan"] == "dlwan"
        assert [s["netns"] for s in first["sites"]] == ["dlsiteA", "dlsiteB"]

        lab.up()  # again: nothing restarted
        assert lab.status() == first
        # siteA reaches siteB's libvirtd across the WAN bridge, as peer-to-peer migration does
        reachable = LocalRunner().run(
            ["ip", "netns", "exec", "dlsiteA", "virsh", "-c", LIFE.peer_uri("siteB"), "uri"],
            timeout=20,
        )
        assert reachable.ok, reachable.stdout + reachable.stderr
        assert reachable.stdout.strip() == "qemu+tcp://10.77.63.2/system"
    finally:
        done = lab.down()
    assert any("stopped libvirtd" in line for line in done)
    for pid in pids:
        assert "libvirtd" not in cmdline(pid) and "virtlogd" not in cmdline(pid)
    after = lab.status()
    assert after["wan"] is None and all(s["libvirtd"] is None for s in after["sites"])
    assert lab.down() == []  # idempotent


@pytest.mark.lab
def test_the_initramfs_carries_init_busybox_and_the_modules(running_lab: RunningLab) -> None:
    listing = subprocess.run(
        f"zcat {running_lab.image.initrd} | cpio -it --quiet",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for member in ("init", "bin/busybox", "bin/awk", "mod/virtio_blk.ko", "mod/softdog.ko"):
        assert member in listing
    assert running_lab.image.kernel.stat().st_size > 1_000_000


def test_lab_config_command_prints_a_config_the_loader_accepts(tmp_path: Path) -> None:
    from drorch.model.loader import load_cluster_with_warnings

    out = CliRunner().invoke(
        lab_cli, ["config", "--name", "x", "--subnet", "10.9.9", "--guest", "g1"]
    )
    assert out.exit_code == 0, out.output
    path = tmp_path / "lab.yaml"
    path.write_text(out.output)
    cluster, warnings = load_cluster_with_warnings(path)
    assert warnings == [] and cluster.hypervisor.driver == "libvirt"
    assert cluster.site("siteB").nodes[0].migration_uri == "qemu+tcp://10.9.9.2/system"


def test_lab_status_of_a_lab_that_is_not_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRORCH_LAB_DIR", str(tmp_path))
    out = CliRunner().invoke(
        lab_cli, ["status", "--name", "never", "--prefix", "nv", "--format", "json"]
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["wan"] is None
    assert [(s["site"], s["libvirtd"], s["running_guests"]) for s in data["sites"]] == [
        ("siteA", None, []),
        ("siteB", None, []),
    ]


def test_a_bad_prefix_is_a_clear_error() -> None:
    out = CliRunner().invoke(lab_cli, ["status", "--prefix", "far-too-long-prefix"])
    assert out.exit_code == 1
    assert "exceeds 15 characters" in out.output
