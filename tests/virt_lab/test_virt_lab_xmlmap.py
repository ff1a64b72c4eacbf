"""Domain XML for the other site: disk remapping, storage sharing, NBD disks, UUIDs."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from drorch.virt.base import HypervisorError
from drorch.virt.xmlmap import (
    disks,
    nbd_disk_xml,
    nbd_key,
    remap_disks,
    storage_plan,
    with_uuid,
)

DOMAIN = """<domain type='qemu'>
  <name>db</name>
  <devices>
    <disk type='block' device='disk'><source dev='/dev/drbd0'/><target dev='vda'/></disk>
    <disk type='file' device='disk'><source file='/a/logs.qcow2'/><target dev='vdb'/></disk>
    <disk type='file' device='cdrom'><source file='/iso/tools.iso'/><target dev='hdc'/>
      <readonly/></disk>
    <disk type='file' device='cdrom'><target dev='hdd'/></disk>
  </devices>
</domain>"""

NBD_ONLY = (
    f"<domain><name>web</name><devices>{nbd_disk_xml('web', '10.0.0.2', 10809)}</devices></domain>"
)


def test_disks_are_classified() -> None:
    found = {d.target: d for d in disks(DOMAIN)}
    assert set(found) == {"vda", "vdb", "hdc"}  # the empty CD-ROM drive has no source
    assert found["vda"].kind == "block" and found["vda"].source == "/dev/drbd0"
    assert found["vda"].is_local_writable and found["vdb"].is_local_writable
    assert found["hdc"].readonly and not found["hdc"].is_local_writable


@pytest.mark.parametrize(
    ("xml", "shared", "copy", "reason"),
    [
        (DOMAIN, True, False, "local disks vda (/dev/drbd0), vdb (/a/logs.qcow2) are on shared"),
        (DOMAIN, False, True, "are not shared: copying them (NON_SHARED_DISK)"),
        (NBD_ONLY, False, False, "every writable disk is a network export: vda (nbd:web)"),
        ("<domain><name>x</name></domain>", False, False, "no writable local disks"),
    ],
)
def test_storage_plan(xml: str, shared: bool, copy: bool, reason: str) -> None:
    plan = storage_plan(xml, shared_storage=shared)
    assert plan.copy_storage is copy
    assert reason in plan.reason


def test_remap_rewrites_only_mapped_local_sources() -> None:
    out, changes = remap_disks(
        DOMAIN, {"/dev/drbd0": "/dev/drbd1", "/iso/tools.iso": "/iso/tools.iso"}
    )
    assert changes == ["vda: /dev/drbd0 -> /dev/drbd1"]
    sources = [s.attrib for s in ET.fromstring(out).iterfind("./devices/disk/source")]
    assert {"dev": "/dev/drbd1"} in sources
    assert {"file": "/a/logs.qcow2"} in sources  # not in the map: untouched


def test_remap_without_a_match_returns_the_same_text() -> None:
    assert remap_disks(DOMAIN, {"/nowhere": "/else"}) == (DOMAIN, [])
    assert remap_disks(DOMAIN, {}) == (DOMAIN, [])


def test_nbd_disk_xml_is_a_network_disk_qemu_understands() -> None:
    disk = ET.fromstring(nbd_disk_xml("vol1", "10.77.0.2", 10809, target="vdb"))
    assert disk.get("type") == "network"
    source = disk.find("source")
    assert source is not None and source.attrib == {"protocol": "nbd", "name": "vol1"}
    host = disk.find("source/host")
    assert host is not None and host.attrib == {"name": "10.77.0.2", "port": "10809"}


def test_with_uuid_adds_one_after_the_name_and_keeps_an_existing_one() -> None:
    out = with_uuid("<domain><name>x</name><memory>1</memory></domain>", "1234")
    root = ET.fromstring(out)
    assert [c.tag for c in root] == ["name", "uuid", "memory"]
    keep = "<domain><name>x</name><uuid>abcd</uuid></domain>"
    assert with_uuid(keep, "1234") == keep


def test_garbage_xml_is_a_hypervisor_error() -> None:
    with pytest.raises(HypervisorError, match="domain XML does not parse"):
        disks("<domain><name>")


def test_remap_moves_an_nbd_disk_to_the_dr_sites_export() -> None:
    out, changes = remap_disks(
        NBD_ONLY, {nbd_key("10.0.0.2", 10809, "web"): "nbd://10.0.0.3:10900/web-dr"}
    )
    assert changes == ["vda: nbd://10.0.0.2:10809/web -> nbd://10.0.0.3:10900/web-dr"]
    source = ET.fromstring(out).find("./devices/disk/source")
    assert source is not None and source.get("name") == "web-dr"
    host = source.find("host")
    assert host is not None and host.attrib == {"name": "10.0.0.3", "port": "10900"}


def test_an_nbd_disk_cannot_be_mapped_to_a_local_path() -> None:
    with pytest.raises(HypervisorError, match="must map to nbd://HOST:PORT/EXPORT"):
        remap_disks(NBD_ONLY, {"nbd://10.0.0.2:10809/web": "/dev/sdb"})
