"""The domain XML for the other site (xmlmap.for_site) and the per-site store."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from types import MappingProxyType

import pytest

from drorch.model.types import VM, Cluster, Driver, Node, ReplicationMode, Site, Volume
from drorch.virt.base import HypervisorError
from drorch.virt.xml_store import XMLStore, digest
from drorch.virt.xmlmap import DRORCH_NS, disks, for_site

CLUSTER = Cluster(
    name="c1",
    sites=(
        Site(
            "A",
            (Node("a1", libvirt_uri="qemu:///system"),),
            networks=MappingProxyType({"lan": "br-a"}),
        ),
        Site(
            "B",
            (Node("b1", libvirt_uri="qemu+tcp://b1/system", migration_uri="tcp://10.2.0.1"),),
            networks=MappingProxyType({"lan": "br-b"}),
        ),
    ),
    primary_site="A",
    volumes=(
        Volume("data", Driver.DRBD, ReplicationMode.SYNC, 2**20, 7789,
               MappingProxyType({"a1": "/dev/vg_a/data", "b1": "/dev/vg_b/data"})),
        Volume("other", Driver.DRBD, ReplicationMode.SYNC, 2**20, 7790,
               MappingProxyType({"a1": "/dev/vg_a/other", "b1": "/dev/vg_b/other"})),
    ),
    vms=(VM("web", "web-dom", volumes=("data",)),),
)  # fmt: skip
VM_WEB = CLUSTER.vms[0]

XML_A = """<domain type='kvm' xmlns:sim='urn:drorch:sim'>
  <name>web-dom</name>
  <devices>
    <disk type='block' device='disk'><source dev='/dev/vg_a/data'/><target dev='vda'/></disk>
    <disk type='block' device='disk'><source dev='/dev/vg_a/other'/><target dev='vdb'/></disk>
    <interface type='bridge'><source bridge='br-a'/></interface>
    <interface type='network'><source network='default'/></interface>
  </devices>
  <metadata><sim:guest dirty_rate_mibps='3'/></metadata>
</domain>"""


def test_for_site_maps_disk_network_and_uris() -> None:
    xml, changes = for_site(XML_A, CLUSTER, VM_WEB, "A", "B")
    assert [d.source for d in disks(xml)] == [
        "/dev/vg_b/data",
        "/dev/vg_a/other",
    ]  # only its volume
    root = ET.fromstring(xml)
    assert [i.find("source").attrib for i in root.iter("interface")] == [  # type: ignore[union-attr]
        {"bridge": "br-b"},
        {"network": "default"},  # not in `networks:`: the same at both sites
    ]
    site = root.find(f"metadata/{{{DRORCH_NS}}}site")
    assert site is not None and site.attrib == {
        "name": "B", "libvirt_uri": "qemu+tcp://b1/system", "migration_uri": "tcp://10.2.0.1",
    }  # fmt: skip
    assert "xmlns:sim=" in xml and "ns0" not in xml  # the guest's namespace prefix is kept
    assert changes == [
        "vda: /dev/vg_a/data -> /dev/vg_b/data",
        "interface bridge br-a -> br-b (lan)",
        "metadata: site B (libvirt_uri qemu+tcp://b1/system, migration_uri tcp://10.2.0.1)",
    ]


def test_for_site_back_is_the_original_meaning() -> None:
    there, _ = for_site(XML_A, CLUSTER, VM_WEB, "A", "B")
    back, _ = for_site(there, CLUSTER, VM_WEB, "B", "A")
    assert [d.source for d in disks(back)] == ["/dev/vg_a/data", "/dev/vg_a/other"]
    assert "br-a" in back and "br-b" not in back
    assert back.count(f"{{{DRORCH_NS}}}") == 0 and back.count("drorch:site") == 1  # replaced


def test_for_site_resolves_relative_paths(tmp_path: Path) -> None:
    cluster = Cluster(
        name="rel", sites=CLUSTER.sites, primary_site="A",
        volumes=(Volume("data", Driver.PYREPL, ReplicationMode.SYNC, 2**20, 7789,
                        MappingProxyType({"a1": "disks/a.img", "b1": "disks/b.img"})),),
    )  # fmt: skip
    xml = f"<domain><devices><disk type='file'><source file='{tmp_path}/disks/a.img'/>"
    xml += "<target dev='vda'/></disk></devices></domain>"
    out, _ = for_site(xml, cluster, VM_WEB, "A", "B", tmp_path)
    assert disks(out)[0].source == f"{tmp_path}/disks/b.img"


def test_store_saves_per_site_and_reads_back(tmp_path: Path) -> None:
    store = XMLStore(tmp_path, CLUSTER)
    saved = store.save(VM_WEB, "A", XML_A, now=1000.0)
    assert [(s.site, s.from_site, len(s.changes)) for s in saved] == [("A", "A", 0), ("B", "A", 3)]
    assert saved[1].path == str(tmp_path / "xml" / "c1" / "web" / "B.xml")
    text, record = store.read(VM_WEB, "A") or ("", None)
    assert text == XML_A and record == saved[0]
    b_text, _ = store.read(VM_WEB, "B") or ("", None)
    assert "/dev/vg_b/data" in b_text
    assert record.source_digest == digest(XML_A)
    assert not list((tmp_path / "xml" / "c1" / "web").glob(".*.tmp"))  # replaced atomically


def test_digest_ignores_formatting_only() -> None:
    assert digest("<a x='1'  y=\"2\"><b/></a>") == digest('<a y="2" x="1">\n  <b></b>\n</a>')
    assert digest("<a x='1'/>") != digest("<a x='2'/>")


def test_store_torn_record_is_an_error_and_missing_is_none(tmp_path: Path) -> None:
    store = XMLStore(tmp_path, CLUSTER)
    assert store.get(VM_WEB, "A") is None
    store.save(VM_WEB, "A", XML_A, now=1.0)
    meta = Path(store.path(VM_WEB, "B")).with_suffix(".json")
    meta.write_text(json.dumps({"vm": "web"}))
    with pytest.raises(HypervisorError, match=r"saved XML record .* is unreadable"):
        store.get(VM_WEB, "B")
