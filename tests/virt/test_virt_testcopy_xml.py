"""The test-recovery copy's domain XML: made from the VM's own, pointing at nothing of
production (drorch.virt.testcopy_xml)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from drorch.virt.testcopy_xml import CopyXMLError, copy_xml_from, interfaces

VM_XML = """<domain type='kvm'>
  <name>db-vm</name>
  <uuid>0d9e5c3a-1111-2222-3333-444455556666</uuid>
  <memory unit='MiB'>512</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type><kernel>/boot/vmlinuz</kernel></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <source protocol='nbd' name='dbdata'><host name='10.0.0.1' port='10809'/></source>
      <target dev='sda' bus='scsi'/>
    </disk>
    <disk type='file' device='cdrom'><source file='/iso/tools.iso'/><target dev='hdc'/></disk>
    <interface type='bridge'>
      <mac address='52:54:00:aa:bb:cc'/><source bridge='br-prod'/><model type='virtio'/>
    </interface>
    <serial type='tcp'><source mode='bind' host='0.0.0.0' service='4555'/><target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <graphics type='vnc' listen='0.0.0.0'/>
    <hostdev mode='subsystem' type='pci'/>
    <filesystem type='mount'><source dir='/srv/prod'/><target dir='prod'/></filesystem>
  </devices>
</domain>
"""


def test_the_copy_boots_like_the_vm_and_reaches_nothing_of_production(tmp_path: Path) -> None:
    serial = tmp_path / "copy.serial.log"
    out = copy_xml_from(VM_XML, "drtr-abc123-db-vm", ["/w/dbdata.qcow2"], network="drtr-n",
                        serial_path=serial)  # fmt: skip
    root = ET.fromstring(out)
    assert root.findtext("name") == "drtr-abc123-db-vm"
    assert root.find("uuid") is None
    # boots like the VM: the same type, machine, kernel, memory, emulator
    assert root.get("type") == "kvm" and root.findtext("memory") == "512"
    os_type = root.find("os/type")
    assert os_type is not None and os_type.get("machine") == "q35"
    assert root.findtext("os/kernel") == "/boot/vmlinuz"
    assert root.findtext("devices/emulator") == "/usr/bin/qemu-system-x86_64"
    disks = root.findall("devices/disk")
    assert len(disks) == 1  # the CD-ROM is left out
    src, target = disks[0].find("source"), disks[0].find("target")
    assert src is not None and src.attrib == {"file": "/w/dbdata.qcow2"}
    assert target is not None and target.attrib == {"dev": "sda", "bus": "scsi"}
    nics = root.findall("devices/interface")
    assert len(nics) == 1 and nics[0].get("type") == "network"
    nic_src = nics[0].find("source")
    assert nic_src is not None and nic_src.attrib == {"network": "drtr-n"}
    assert nics[0].find("mac") is None  # libvirt makes a new one
    assert nics[0].find("model") is not None
    serial_el = root.find("devices/serial")
    assert serial_el is not None and serial_el.get("type") == "file"
    serial_src = serial_el.find("source")
    assert serial_src is not None and serial_src.get("path") == str(serial)
    for gone in ("graphics", "hostdev", "filesystem"):
        assert root.find(f"devices/{gone}") is None, gone
    assert "10.0.0.1" not in out and "br-prod" not in out and "/srv/prod" not in out


def test_more_volumes_than_disks_get_spare_targets() -> None:
    base = "<domain type='qemu'><name>x</name><devices/></domain>"
    out = copy_xml_from(base, "c", ["/a.qcow2", "/b.qcow2"], network=None,
                        serial_path=Path("/w/s.log"))  # fmt: skip
    targets = [d.find("target") for d in ET.fromstring(out).findall("devices/disk")]
    assert [t.get("dev") for t in targets if t is not None] == ["vda", "vdb"]


def test_nics_without_an_isolated_network_are_refused() -> None:
    assert interfaces(VM_XML) == 1
    with pytest.raises(CopyXMLError, match="has NICs but the run has no isolated network"):
        copy_xml_from(VM_XML, "c", ["/a.qcow2"], network=None, serial_path=Path("/s"))


@pytest.mark.parametrize("bad", ["<domain", "<network><name>n</name></network>"])
def test_bad_saved_xml(bad: str) -> None:
    with pytest.raises(CopyXMLError):
        copy_xml_from(bad, "c", [], network=None, serial_path=Path("/s"))
