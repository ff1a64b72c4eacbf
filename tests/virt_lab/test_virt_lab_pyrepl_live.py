"""A live migration of a guest whose disk is a pyrepl volume (two primaries, pyrepl/
dual.py): the guest boots from site A's NBD export and writes its counter to the disk
every beat; two primaries are allowed, B is promoted beside A, the guest live-migrates to
B (QEMU at B opens B's export: its writes are forwarded to A until A demotes), A demotes
(the hand-over) and the guest goes on writing at B on the same connection. Both replicas
end identical, holding the guest's last counter."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drorch.replication.pyrepl.control import ControlClient
from drorch.virt.base import MigrationOptions, VMState
from drorch.virt.libvirt import LibvirtHypervisor
from drorch.virt.xmlmap import nbd_disk_xml, nbd_key
from tests.virt_lab.conftest import GuestFactory, RunningLab
from tests.virt_lab.test_virt_lab_pyrepl_nbd import NBD_PORT, Replicator, replicators

pytestmark = pytest.mark.lab
__all__ = ["replicators"]  # the fixture


def counter(path: Path) -> int:
    """The guest's persisted counter: "DISKCOUNTER n" in sector 0."""
    text = path.read_bytes()[:512].split(b"\0", 1)[0].decode(errors="replace")
    assert text.startswith("DISKCOUNTER "), text
    return int(text.removeprefix("DISKCOUNTER "))


def call(r: Replicator, op: str, **args: object) -> dict[str, object]:
    return dict(ControlClient(r.control, timeout=30).call(op, **args))


def test_live_migration_on_a_pyrepl_volume_with_two_primaries(
    running_lab: RunningLab, guest: GuestFactory, replicators: Callable[..., Replicator]
) -> None:
    a_addr = running_lab.layout.site("siteA").address
    b_addr = running_lab.layout.site("siteB").address
    rb = replicators("siteB", "secondary")
    ra = replicators("siteA", "primary", peer=b_addr)
    ra.wait("in sync", lambda st: st["connection"] == "Connected" and st["peer_disk"] == "UpToDate")
    g = guest(cmdline="disk=1", disk_xml=nbd_disk_xml("vol", a_addr, NBD_PORT))
    g.wait_heartbeat(above=3)

    call(ra, "allow_two_primaries")
    assert "second primary" in str(call(rb, "promote", epoch=5)["message"])
    b = LibvirtHypervisor.connect(
        running_lab.layout.local_uri("siteB"),
        "siteB",
        peer_uri=running_lab.layout.peer_uri("siteB"),
        path_map={nbd_key(a_addr, NBD_PORT, "vol"): nbd_key(b_addr, NBD_PORT, "vol")},
    )
    try:
        result = running_lab.a.migrate_live(g.name, b, MigrationOptions(deadline=90.0))
        assert result.converged, result.reason
        assert b.state(g.name) == VMState.RUNNING
        assert f'<host name="{b_addr}" port="{NBD_PORT}"' in b.export_xml(g.name).replace("'", '"')
        beat = g.wait_heartbeat()
        rb.wait(
            "the guest writes at B (forwarded)",
            lambda st: st["extra"]["two_primaries"]["forwarded"] > 0,
        )
        call(ra, "demote")  # the hand-over
        rb.wait("B is sole primary", lambda st: st["extra"]["two_primaries"]["state"] == "off")
        assert rb.status()["epoch"] == 5
        g.wait_heartbeat(above=beat + 4, timeout=30)  # still writing, same NBD connection
        assert rb.status()["extra"]["two_primaries"]["state"] == "off"
        call(rb, "forbid_two_primaries")
        b.destroy(g.name)
        deadline = time.monotonic() + 10
        while b.state(g.name) == VMState.RUNNING and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        b.close()
    rb.wait("quiet", lambda st: st["lag_bytes"] == 0 and st["connection"] == "Connected")
    root = rb.control.parent
    disk_a, disk_b = root / "siteA.img", root / "siteB.img"
    assert counter(disk_a) == counter(disk_b) >= beat
    same = subprocess.run(
        ["qemu-img", "compare", "-f", "raw", "-F", "raw", str(disk_a), str(disk_b)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert same.returncode == 0, same.stdout + same.stderr
