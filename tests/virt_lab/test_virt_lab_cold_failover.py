"""Cold failover in the real lab: site A's QEMU dies (killed by PID), site B boots the VM
from the saved XML with its own replica of the disk, and the guest's counter goes on."""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest

from drorch.lab.processes import live_pid
from drorch.virt.base import VMRunningElsewhere, VMState
from drorch.virt.libvirt import LibvirtHypervisor
from tests.virt_lab.conftest import GuestFactory, RunningLab

pytestmark = pytest.mark.lab


def disk_xml(path: str) -> str:
    return (
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
        f"<source file='{path}'/><target dev='vda' bus='virtio'/></disk>"
    )


def disk_counter(path: str) -> int:
    with open(path, "rb") as disk:
        text = disk.read(40).rstrip(b"\0").decode()
    assert text.startswith("DISKCOUNTER "), text
    return int(text.split()[1])


def test_cold_start_at_b_after_killing_site_a_qemu(
    running_lab: RunningLab, guest: GuestFactory
) -> None:
    guests = running_lab.layout.guest_dir
    disk_a, disk_b = str(guests / "cold-a.img"), str(guests / "cold-b.img")
    with open(disk_a, "wb") as f:
        f.truncate(2**20)
    a = running_lab.a
    b = LibvirtHypervisor.connect(
        running_lab.layout.local_uri("siteB"), "siteB", path_map={disk_a: disk_b}
    )
    try:
        g = guest(cmdline="disk=1", disk_xml=disk_xml(disk_a))
        g.wait_heartbeat(above=2)
        saved = a.export_xml(g.name)

        with pytest.raises(VMRunningElsewhere, match=f"{g.name} at site siteB: it is running"):
            b.cold_start(saved, [a])
        assert b.state(g.name) == VMState.UNDEFINED  # refused before defining anything

        pid = live_pid(running_lab.layout.run_dir("siteA") / "qemu" / f"{g.name}.pid", "qemu")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # site A's hypervisor dies
        deadline = time.monotonic() + 10
        while a.state(g.name) == VMState.RUNNING and time.monotonic() < deadline:
            time.sleep(0.1)
        assert a.state(g.name) in (VMState.SHUTOFF, VMState.CRASHED)
        last = disk_counter(disk_a)
        shutil.copyfile(disk_a, disk_b)  # what replication delivered to site B

        result = b.cold_start(saved, [a])
        assert result.site == "siteB" and result.checked_sites == ("siteA",)
        assert result.unreachable_sites == ()
        assert f"started {g.name} at site siteB" in result.reason
        assert b.state(g.name) == VMState.RUNNING
        assert disk_b in b.export_xml(g.name) and disk_a not in b.export_xml(g.name)
        g.wait_heartbeat(above=last + 2, timeout=30)  # counting on from the replica
        assert disk_counter(disk_b) > last
        assert f"DISK FOUND last='DISKCOUNTER {last}'" in g.serial_log.read_text(errors="replace")
    finally:
        b.close()


def test_cold_start_with_the_other_site_unreachable_proceeds_and_says_so(
    running_lab: RunningLab, guest: GuestFactory
) -> None:
    g = guest(start=False)
    saved = running_lab.a.export_xml(g.name)
    running_lab.a.undefine(g.name)
    gone = LibvirtHypervisor.connect(
        "qemu+unix:///system?socket=/nonexistent/libvirt-sock", "siteA", connect_timeout=3
    )
    result = running_lab.b.cold_start(saved, [gone])
    assert result.unreachable_sites == ("siteA",) and result.checked_sites == ()
    assert "could not check siteA (unreachable)" in result.reason
    assert running_lab.b.state(g.name) == VMState.RUNNING
    g.wait_heartbeat()
