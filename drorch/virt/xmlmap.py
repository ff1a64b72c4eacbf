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
from pathlib import Path
from urllib.parse import urlsplit

from drorch.model.types import VM, Cluster, Driver, Site, Volume
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


# -- the definition for the other site --------------------------------------------------

DRORCH_NS = "https://drorch.dev/xml/site/1"


def site_path_map(
    cluster: Cluster, vm: VM, from_site: str, to_site: str, base_dir: Path | None = None
) -> dict[str, str]:
    """Each of the VM's volume paths at `from_site` -> the same volume's path at
    `to_site` (as written in the config, and resolved against `base_dir` when relative)."""
    src = {n.name for n in cluster.site(from_site).nodes}
    dst = [n.name for n in cluster.site(to_site).nodes]
    mapping: dict[str, str] = {}
    for name in vm.volumes:
        volume = next((v for v in cluster.volumes if v.name == name), None)
        if volume is None:
            continue
        there = next((volume.paths[n] for n in dst if n in volume.paths), None)
        if there is None:
            continue
        for node, here in volume.paths.items():
            if node in src:
                mapping[here] = there
                if base_dir is not None and not here.startswith("/"):
                    mapping[str(base_dir / here)] = str(base_dir / there)
        mapping |= _nbd_export_map(cluster, volume, src, dst)
    return mapping


def _nbd_export_map(
    cluster: Cluster, volume: Volume, src: set[str], dst: list[str]
) -> dict[str, str]:
    """A pyrepl volume's NBD export at the source site -> its export at the target site
    (where `drorch repl serve` listens: the node's replication_address, else loopback
    for a local node; port `pyrepl.nbd_port` + the node's index in `paths`)."""
    if volume.driver is not Driver.PYREPL or volume.pyrepl.nbd_port is None:
        return {}
    names = list(volume.paths)

    def export(node_name: str) -> str | None:
        node = cluster.node(node_name)[1]
        host = node.replication_address or ("127.0.0.1" if node.is_local else None)
        if host is None:
            return None
        port = volume.pyrepl.nbd_port + names.index(node_name)  # type: ignore[operator]
        return nbd_key(host, port, volume.name)

    there = next((export(n) for n in dst if n in volume.paths), None)
    if there is None:
        return {}
    return {k: there for n in names if n in src and (k := export(n)) is not None}


def remap_networks(
    root: ET.Element, from_networks: Mapping[str, str], to_networks: Mapping[str, str]
) -> list[str]:
    """Rewrite `<interface>` sources (libvirt network or bridge) named in the source
    site's `networks:` to the target site's network of the same meaning."""
    by_name = {real: key for key, real in from_networks.items()}
    changes: list[str] = []
    for interface in root.iterfind("./devices/interface"):
        source = interface.find("source")
        attr = {"network": "network", "bridge": "bridge"}.get(interface.get("type", ""))
        if source is None or attr is None:
            continue
        old = source.get(attr)
        key = by_name.get(old or "")
        if old is None or key is None or key not in to_networks or to_networks[key] == old:
            continue
        source.set(attr, to_networks[key])
        changes.append(f"interface {attr} {old} -> {to_networks[key]} ({key})")
    return changes


def _set_site_metadata(root: ET.Element, site: Site) -> str:
    """`<metadata><drorch:site name=... libvirt_uri=... migration_uri=...>`: which site
    this definition is for, and how that site's libvirtd is reached."""
    metadata = root.find("metadata")
    if metadata is None:
        metadata = ET.SubElement(root, "metadata")
    tag = f"{{{DRORCH_NS}}}site"
    for old in metadata.findall(tag):
        metadata.remove(old)
    node = site.nodes[0]
    attrs = {"name": site.name}
    if node.libvirt_uri:
        attrs["libvirt_uri"] = node.libvirt_uri
    if node.migration_uri:
        attrs["migration_uri"] = node.migration_uri
    ET.SubElement(metadata, tag, attrs)
    uris = ", ".join(f"{k} {v}" for k, v in attrs.items() if k != "name")
    return f"metadata: site {site.name}" + (f" ({uris})" if uris else "")


def _keep_prefixes(xml: str) -> None:
    """Write namespaces back with the prefixes the XML uses (ElementTree would say ns0)."""
    import io

    ET.register_namespace("drorch", DRORCH_NS)
    try:
        for _event, (prefix, uri) in ET.iterparse(io.StringIO(xml), events=("start-ns",)):
            if prefix and not prefix.startswith("ns") and uri != DRORCH_NS:
                ET.register_namespace(prefix, uri)
    except (ET.ParseError, ValueError):
        return  # _parse reports it


def for_site(
    xml: str, cluster: Cluster, vm: VM, from_site: str, to_site: str, base_dir: Path | None = None
) -> tuple[str, list[str]]:
    """The domain XML as defined at `from_site`, made for `to_site`: disk sources to the
    replica there, interfaces to that site's networks, and the site (with its libvirt and
    migration URIs) in drorch's metadata. Returns the XML and one line per change."""
    _keep_prefixes(xml)
    text, changes = remap_disks(xml, site_path_map(cluster, vm, from_site, to_site, base_dir))
    root = _parse(text)
    changes += remap_networks(
        root, cluster.site(from_site).networks, cluster.site(to_site).networks
    )
    changes.append(_set_site_metadata(root, cluster.site(to_site)))
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n", changes
