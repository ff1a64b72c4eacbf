"""The domain XML of a test-recovery copy, made from the VM's own XML for the DR site.

A copy must boot like the VM (its firmware or kernel, machine type, CPU, memory, the
devices its OS expects) and touch nothing of production, so the VM's saved XML for the
site (`drorch vm sync-xml`, saved on every migration) is rewritten:

- its name is the copy's, and its UUID is dropped (libvirt makes a new one): production's
  domain is never redefined;
- every disk is replaced: the VM's volumes by their overlays, in the order of the VM's
  `volumes:` (the overlay of the point-in-time view), in the bus and target of the disk
  they replace; any other disk (an ISO, a local scratch disk) is left out;
- every NIC is attached to the run's isolated network (no forward: no route to
  production or the WAN), with no MAC of its own (libvirt makes a new one);
- a serial port or console that writes a file, a socket or a TCP port writes the run's
  work directory instead, so production's logs (a heartbeat monitor reads them) stay
  untouched; graphics, host devices, shared filesystems, redirected USB and smartcards
  are left out: each could reach the host or production.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

DROPPED_DEVICES = ("graphics", "hostdev", "filesystem", "redirdev", "smartcard", "channel")


class CopyXMLError(ValueError):
    pass


def copy_xml_from(
    base: str,
    name: str,
    overlays: Sequence[str],
    *,
    network: str | None,
    serial_path: Path,
) -> str:
    """The copy's domain XML (see the module docstring). `network`: the isolated libvirt
    network the NICs join; None when the VM has no NIC (CopyXMLError if it has one)."""
    try:
        root = ET.fromstring(base)
    except ET.ParseError as exc:
        raise CopyXMLError(f"the VM's saved XML does not parse: {exc}") from exc
    if root.tag != "domain":
        raise CopyXMLError(f"the VM's saved XML is a <{root.tag}>, not a <domain>")
    _set_text(root, "name", name)
    for uuid in root.findall("uuid"):
        root.remove(uuid)
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    targets = _replace_disks(devices, overlays)
    _isolate_nics(devices, network)
    _redirect_char_devices(devices, serial_path)
    for tag in DROPPED_DEVICES:
        for dev in devices.findall(tag):
            devices.remove(dev)
    if len(targets) != len(overlays):  # pragma: no cover - _replace_disks adds them all
        raise CopyXMLError("not every overlay became a disk")
    return ET.tostring(root, encoding="unicode") + "\n"


def interfaces(base: str) -> int:
    """How many NICs the VM's XML has (the copy needs an isolated network only then)."""
    try:
        return len(ET.fromstring(base).findall("devices/interface"))
    except ET.ParseError:
        return 0


def serial_files(base: str) -> set[str]:
    """The files the VM's serial ports and consoles write (its copy writes elsewhere)."""
    try:
        root = ET.fromstring(base)
    except ET.ParseError:
        return set()
    found = set()
    for tag in ("serial", "console"):
        for dev in root.findall(f"devices/{tag}"):
            src = dev.find("source")
            if dev.get("type") == "file" and src is not None and src.get("path"):
                found.add(str(src.get("path")))
    return found


def _set_text(root: ET.Element, tag: str, text: str) -> None:
    el = root.find(tag)
    if el is None:
        el = ET.Element(tag)
        root.insert(0, el)
    el.text = text


def _replace_disks(devices: ET.Element, overlays: Sequence[str]) -> list[str]:
    disks = [d for d in devices.findall("disk") if d.get("device", "disk") == "disk"]
    slots: list[tuple[str, str]] = []
    for d in devices.findall("disk"):
        devices.remove(d)
    for d in disks:
        target = d.find("target")
        if target is not None and target.get("dev"):
            slots.append((str(target.get("dev")), target.get("bus", "virtio")))
    used = {dev for dev, _ in slots}
    spare = (f"vd{chr(ord('a') + i)}" for i in range(26))
    while len(slots) < len(overlays):
        dev = next(d for d in spare if d not in used)
        used.add(dev)
        slots.append((dev, "virtio"))
    done = []
    for path, (dev, bus) in zip(overlays, slots, strict=False):
        disk = ET.SubElement(devices, "disk", {"type": "file", "device": "disk"})
        ET.SubElement(disk, "driver", {"name": "qemu", "type": "qcow2"})
        ET.SubElement(disk, "source", {"file": path})
        ET.SubElement(disk, "target", {"dev": dev, "bus": bus})
        done.append(dev)
    return done


def _isolate_nics(devices: ET.Element, network: str | None) -> None:
    nics = devices.findall("interface")
    if nics and network is None:
        raise CopyXMLError("the VM has NICs but the run has no isolated network for them")
    for nic in nics:
        model = nic.find("model")
        devices.remove(nic)
        new = ET.SubElement(devices, "interface", {"type": "network"})
        ET.SubElement(new, "source", {"network": str(network)})
        if model is not None:
            new.append(model)


def _redirect_char_devices(devices: ET.Element, serial_path: Path) -> None:
    for tag in ("serial", "console", "parallel"):
        for dev in devices.findall(tag):
            if dev.get("type") in ("pty", "null", None):
                continue
            for child in list(dev):
                if child.tag != "target":
                    dev.remove(child)
            dev.set("type", "file")
            dev.insert(0, ET.Element("source", {"path": str(serial_path), "append": "on"}))
