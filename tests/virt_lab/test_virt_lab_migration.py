"""Live migration between two real libvirtd sites (QEMU/TCG guests in network namespaces).

Each test boots its own 128 MiB heartbeat guest at site A; the lab is shared (session).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from drorch.clock import SystemClock
from drorch.lab.processes import live_pid
from drorch.monitor.heartbeat import HeartbeatPolicy
from drorch.monitor.serial_log import HeartbeatMonitor
from drorch.remote.local import LocalRunner
from drorch.virt.base import MigrationFailed, MigrationOptions, MigrationProgress, VMState
from drorch.virt.libvirt import LibvirtHypervisor
from tests.virt_lab.conftest import Guest, GuestFactory, RunningLab

pytestmark = pytest.mark.lab

# the test guests beat twice a second: three new beats within 4 s means alive
BEATING = HeartbeatPolicy(min_beats=3, window=4.0, startup_grace=12.0)


def assert_heartbeat_continues(g: Guest, after: int) -> None:
    with HeartbeatMonitor(
        g.serial_log, SystemClock(), BEATING, baseline=after, expect_continuation=True
    ) as monitor:
        verdict = monitor.wait_until_rising(timeout=15.0, interval=0.25)
    assert verdict.healthy, verdict.reason
    assert verdict.last_n is not None and verdict.last_n > after


def qemu_pid(lab: RunningLab, site: str, vm: str) -> int | None:
    return live_pid(lab.layout.run_dir(site) / "qemu" / f"{vm}.pid", "qemu-system")


def test_live_migration_reports_progress_and_the_guest_keeps_beating_at_b(
    running_lab: RunningLab, guest: GuestFactory
) -> None:
    a, b = running_lab.a, running_lab.b
    g = guest()
    samples: list[MigrationProgress] = []
    result = a.migrate_live(g.name, b, MigrationOptions(deadline=60.0), samples.append)

    assert result.converged and not result.postcopy
    assert "pre-copy converged" in result.reason
    assert result.downtime_ms is not None and 0 < result.downtime_ms < 2000
    assert result.data_transferred > 16 * 2**20  # a 128 MiB guest's touched memory moved
    assert samples, "progress was reported"
    assert samples[-1].data_total >= 128 * 2**20
    assert max(s.data_processed for s in samples) > 0
    assert all(s.max_downtime_ms == 300 for s in samples)  # the configured default

    assert b.state(g.name) == VMState.RUNNING
    assert a.state(g.name) == VMState.UNDEFINED  # UNDEFINE_SOURCE
    assert g.name in b.list() and g.name not in a.list()
    assert qemu_pid(running_lab, "siteB", g.name) is not None
    assert qemu_pid(running_lab, "siteA", g.name) is None
    before = g.wait_heartbeat()
    assert_heartbeat_continues(g, before)

    back = b.migrate_live(g.name, a, MigrationOptions(deadline=60.0))  # and home again
    assert back.converged
    assert a.state(g.name) == VMState.RUNNING and b.state(g.name) == VMState.UNDEFINED
    assert_heartbeat_continues(g, g.wait_heartbeat())


def test_live_migration_copies_unshared_disks_to_the_dr_sites_path(
    running_lab: RunningLab, guest: GuestFactory
) -> None:
    """A local disk that is not on shared storage is copied during the migration
    (NON_SHARED_DISK) into the image the DR site keeps at its own path (remapped), and
    the guest goes on writing it there while the source's copy stays behind."""
    guests = running_lab.layout.guest_dir
    disk_a, disk_b = guests / "copy-a.img", guests / "copy-b.img"
    runner = LocalRunner()
    for disk in (disk_a, disk_b):  # the DR site's image exists (its storage pool's job)
        disk.unlink(missing_ok=True)
        runner.run(["qemu-img", "create", "-q", "-f", "raw", str(disk), "1M"], check=True)
    b = LibvirtHypervisor.connect(
        running_lab.layout.local_uri("siteB"),
        "siteB",
        peer_uri=running_lab.layout.peer_uri("siteB"),
        path_map={str(disk_a): str(disk_b)},
    )
    try:
        g = guest(
            cmdline="disk=1",
            disk_xml="<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
            f"<source file='{disk_a}'/><target dev='vda' bus='virtio'/></disk>",
        )
        g.wait_heartbeat(above=2)
        options = MigrationOptions(shared_storage=False, deadline=60.0)
        result = running_lab.a.migrate_live(g.name, b, options)
        assert result.converged
        assert "are not shared: copying them (NON_SHARED_DISK)" in result.reason
        assert f"vda: {disk_a} -> {disk_b}" in result.reason
        assert str(disk_b) in b.export_xml(g.name) and str(disk_a) not in b.export_xml(g.name)
        moved_at = g.wait_heartbeat()
        assert_heartbeat_continues(g, moved_at)
        at_a, at_b = disk_counter(disk_a), disk_counter(disk_b)
        assert at_b > moved_at >= at_a  # B's copy goes on; A's stopped at the hand-over
    finally:
        b.close()


def disk_counter(path: Path) -> int:
    text = path.read_bytes()[:40].rstrip(b"\0").decode()
    assert text.startswith("DISKCOUNTER "), text
    return int(text.split()[1])


def test_abort_in_the_middle_leaves_the_vm_running_at_the_source_defined_once(
    running_lab: RunningLab, guest: GuestFactory
) -> None:
    a, b = running_lab.a, running_lab.b
    g = guest()
    samples: list[MigrationProgress] = []
    # 4 MiB/s cannot move ~80 MiB before a 4 s deadline: the policy aborts mid-flight
    options = MigrationOptions(bandwidth_mibps=4, deadline=4.0)
    started = time.monotonic()
    with pytest.raises(MigrationFailed) as failure:
        a.migrate_live(g.name, b, options, samples.append)
    took = time.monotonic() - started

    message = str(failure.value)
    assert "did not converge before the 4s deadline" in message
    assert f"{g.name} still runs at siteA" in message
    assert took < options.deadline + a.abort_grace
    assert samples and 0 < samples[-1].data_processed < samples[-1].data_total
    assert failure.value.result is not None and not failure.value.result.converged
    assert a.state(g.name) == VMState.RUNNING
    assert b.state(g.name) == VMState.UNDEFINED
    assert a.list().count(g.name) == 1 and g.name not in b.list()
    assert_heartbeat_continues(g, g.wait_heartbeat())


def test_near_the_deadline_a_dirty_guest_switches_to_postcopy_and_lands_at_b(
    running_lab: RunningLab, guest: GuestFactory
) -> None:
    """A guest rewriting 16 MiB over a 10 MiB/s link cannot converge in 6 s; with
    post-copy allowed the policy switches (migrateStartPostCopy) instead of aborting."""
    a, b = running_lab.a, running_lab.b
    g = guest(cmdline="dirty=16")
    samples: list[MigrationProgress] = []
    options = MigrationOptions(
        bandwidth_mibps=10, deadline=6.0, allow_postcopy=True, auto_converge=False
    )
    result = a.migrate_live(g.name, b, options, samples.append)
    assert result.postcopy and not result.converged
    assert "through post-copy" in result.reason
    assert any(s.postcopy for s in samples)
    assert b.state(g.name) == VMState.RUNNING and a.state(g.name) == VMState.UNDEFINED
    assert_heartbeat_continues(g, g.wait_heartbeat())


def test_partition_in_the_middle_fails_within_the_deadline(
    running_lab: RunningLab, guest: GuestFactory
) -> None:
    """The sites' ports on the WAN bridge go down: silent, like a cut fibre (TCP resets
    from a firewall fail faster; their nft rules are checked in test_virt_lab_layout)."""
    mode = "link"
    a, b = running_lab.a, running_lab.b
    g = guest()
    cut: list[float] = []

    def partition_after_8_mib(p: MigrationProgress) -> None:
        if p.data_processed > 8 * 2**20 and not cut:
            running_lab.lab.partition(mode)  # type: ignore[arg-type]
            cut.append(p.elapsed)

    options = MigrationOptions(bandwidth_mibps=8, deadline=10.0)
    started = time.monotonic()
    try:
        with pytest.raises(MigrationFailed) as failure:
            a.migrate_live(g.name, b, options, partition_after_8_mib)
        took = time.monotonic() - started
    finally:
        running_lab.lab.heal()
    assert cut, "the partition happened in the middle of the migration"
    assert took < options.deadline + a.abort_grace, f"blocked {took:.1f} s"
    message = str(failure.value)
    print(f"partition: failed after {took:.1f} s: {message}")
    # libvirt's keepalive (2 s x 2 in the lab) or our deadline, whichever comes first
    assert "the link between the sites broke" in message or "10s deadline" in message
    assert f"{g.name} still runs at siteA" in str(failure.value)
    assert a.state(g.name) == VMState.RUNNING
    assert a.list().count(g.name) == 1
    assert b.state(g.name) == VMState.UNDEFINED
    assert_heartbeat_continues(g, g.wait_heartbeat())
