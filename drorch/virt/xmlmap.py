"""Domain XML rewriting for the other site, and what its disks say about storage.

Pure functions on XML text. A disk's path at one site maps to the same volume's path at
the other through the cluster model (`Volume.paths` by node), so the DR site's domain
definition uses its own replica. A disk on a network export (NBD, RBD, iSCSI...) is the
same at both sites and counts as shared storage.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from drorch.virt.base import HypervisorError

# <disk type=...> -> the <source> attribute that holds its local path
_LOCAL_SOURCE_ATTR = {"file": "file", "block": "dev", "dir": "dir"}


@dataclass(frozen=True)
class DiskInfo:
    target: str
    kind: str  # file | block | dir | network | volume
    source: str  # path, or protocol:name for network disks
    readonly: bool
    shareable: bool

    @property
    def is_local_writable(self) -> bool:
        """A local disk the guest writes: it must be copied unless the storage is shared."""
        return self.kind in _LOCAL_SOURCE_ATTR and not (self.readonly or self.shareable)


@dataclass(frozen=True)
class StoragePlan:
    copy_storage: bool  # VIR_MIGRATE_NON_SHARED_DISK
    reason: str


def _parse(xml: str) -> ET.Element:
    try:
        return ET.fromstring(xml)
    except ET.ParseError as exc:
        raise HypervisorError(f"domain XML does not parse: {exc}") from None


def disks(xml: str) -> list[DiskInfo]:
    found: list[DiskInfo] = []
    for disk in _parse(xml).iterfind("./devices/disk"):
        kind = disk.get("type", "file")
        device = disk.get("device", "disk")
        source = disk.find("source")
        target = disk.find("target")
        if source is None:
            continue  # an empty CD-ROM drive
        if kind == "network":
            where = f"{source.get('protocol', '?')}:{source.get('name', '')}"
        else:
            where = source.get(_LOCAL_SOURCE_ATTR.get(kind, "file"), "") or source.get("volume", "")
        found.append(
            DiskInfo(
                target=target.get("dev", "?") if target is not None else "?",
                kind=kind,
                source=where,
                readonly=disk.find("readonly") is not None or device == "cdrom",
                shareable=disk.find("shareable") is not None,
            )
        )
    return found


def storage_plan(xml: str, shared_storage: bool) -> StoragePlan:
    """Whether live migration must copy the disks (NON_SHARED_DISK), and why."""
    local = [d for d in disks(xml) if d.is_local_writable]
    network = [d for d in disks(xml) if d.kind == "network"]
    if not local:
        if network:
            names = ", ".join(f"{d.target} ({d.source})" for d in network)
            return StoragePlan(False, f"every writable disk is a network export: {names}")
        return StoragePlan(False, "no writable local disks")
    names = ", ".join(f"{d.target} ({d.source})" for d in local)
    if shared_storage:
        return StoragePlan(
            False, f"local disks {names} are on shared or replicated storage (shared_storage)"
        )
    return StoragePlan(True, f"local disks {names} are not shared: copying them (NON_SHARED_DISK)")


def nbd_key(host: str, port: int | str, export: str) -> str:
    """How an NBD disk is named in a path map: nbd://HOST:PORT/EXPORT."""
    return f"nbd://{host}:{port}/{export}"


def _remap_nbd(disk: ET.Element, path_map: Mapping[str, str]) -> str | None:
    source = disk.find("source")
    host = source.find("host") if source is not None else None
    if source is None or host is None or source.get("protocol") != "nbd":
        return None
    old = nbd_key(host.get("name", ""), host.get("port", "10809"), source.get("name", ""))
    new = path_map.get(old)
    if new is None or new == old:
        return None
    parts = urlsplit(new)
    if parts.scheme != "nbd" or not parts.hostname:
        raise HypervisorError(f"path map: {old} must map to nbd://HOST:PORT/EXPORT, not {new}")
    host.set("name", parts.hostname)
    host.set("port", str(parts.port or 10809))
    source.set("name", parts.path.lstrip("/") or source.get("name", ""))
    return f"{old} -> {new}"


def remap_disks(xml: str, path_map: Mapping[str, str]) -> tuple[str, list[str]]:
    """Rewrite disk sources found in `path_map`: local disks by exact path, NBD disks by
    `nbd://HOST:PORT/EXPORT`. Returns the new XML and one line per change; the XML is
    returned unchanged (same text) when nothing matched."""
    if not path_map:
        return xml, []
    root = _parse(xml)
    changes: list[str] = []
    for disk in root.iterfind("./devices/disk"):
        target = disk.find("target")
        dev = target.get("dev", "?") if target is not None else "?"
        if disk.get("type") == "network":
            change = _remap_nbd(disk, path_map)
            if change:
                changes.append(f"{dev}: {change}")
            continue
        attr = _LOCAL_SOURCE_ATTR.get(disk.get("type", "file"))
        source = disk.find("source")
        if attr is None or source is None:
            continue
        old = source.get(attr)
        if old is not None and old in path_map and path_map[old] != old:
            source.set(attr, path_map[old])
            changes.append(f"{dev}: {old} -> {path_map[old]}")
    if not changes:
        return xml, []
    return ET.tostring(root, encoding="unicode"), changes


def with_uuid(xml: str, uuid: str) -> str:
    """`xml` with `<uuid>` set when it has none (redefining a domain by name keeps its
    identity; libvirt refuses a second UUID for an existing name)."""
    root = _parse(xml)
    if root.find("uuid") is not None:
        return xml
    element = ET.Element("uuid")
    element.text = uuid
    name_at = [i for i, child in enumerate(root) if child.tag == "name"]
    root.insert(name_at[0] + 1 if name_at else 0, element)
    return ET.tostring(root, encoding="unicode")


def nbd_disk_xml(export: str, host: str, port: int, target: str = "vda") -> str:
    """A <disk> element for an NBD export (e.g. `drorch repl serve`), raw format."""
    disk = ET.Element("disk", type="network", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="raw", cache="none")
    source = ET.SubElement(disk, "source", protocol="nbd", name=export)
    ET.SubElement(source, "host", name=host, port=str(port))
    ET.SubElement(disk, "target", dev=target, bus="virtio")
    return ET.tostring(disk, encoding="unicode")
