"""The hypervisor contract on libvirt's test driver: real libvirt-python, no daemon.

Site A is `test:///default`; site B is a second, independent test-driver instance
(`test:///<file>` with an empty node), so defining at one site never shows at the other.
The test driver cannot migrate (`supports_migration = False`) and its guests always
accept a graceful shutdown (no unresponsive guest).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest

from drorch.environment import Environment
from drorch.model.types import (
    Cluster,
    Driver,
    Hypervisors,
    Node,
    ReplicationMode,
    Site,
    Volume,
)
from drorch.testing.contract_hypervisor import HypervisorContract, HypervisorPair
from drorch.virt.base import HypervisorError, NoSuchVM, VMState
from drorch.virt.libvirt import LibvirtHypervisor

EMPTY_NODE = "<node><cpu><mhz>2000</mhz></cpu><memory>4194304</memory></node>\n"


def domain_xml_for(name: str) -> str:
    return (
        f"<domain type='test'><name>{name}</name><memory unit='MiB'>128</memory>"
        "<os><type>hvm</type></os>"
        "<devices><disk type='file' device='disk'>"
        f"<source file='/srv/site-a/{name}.img'/><target dev='vda' bus='virtio'/></disk>"
        "</devices></domain>"
    )


def _cleanup(hyp: LibvirtHypervisor) -> None:
    for name in hyp.list():
        if name.startswith("ct-"):
            hyp.destroy(name)
            hyp.undefine(name)


@pytest.fixture
def test_driver_pair(tmp_path: Path) -> Iterator[tuple[LibvirtHypervisor, LibvirtHypervisor]]:
    node = tmp_path / "site-b-node.xml"
    node.write_text(EMPTY_NODE)
    a = LibvirtHypervisor.connect("test:///default", "A")
    b = LibvirtHypervisor.connect(
        f"test://{node}", "B", path_map={"/srv/site-a/ct-export.img": "/srv/site-b/x.img"}
    )
    try:
        yield a, b
    finally:
        for hyp in (a, b):
            _cleanup(hyp)
            hyp.close()


class TestLibvirtTestDriverContract(HypervisorContract):
    supports_migration = False  # libvirt's test driver has no migration

    @pytest.fixture
    def pair(
        self, test_driver_pair: tuple[LibvirtHypervisor, LibvirtHypervisor]
    ) -> Iterator[HypervisorPair]:
        a, b = test_driver_pair
        yield HypervisorPair(source=a, dest=b, vm_xml=domain_xml_for)


def test_define_at_the_other_site_remaps_disk_paths(
    test_driver_pair: tuple[LibvirtHypervisor, LibvirtHypervisor],
) -> None:
    a, b = test_driver_pair
    a.define(domain_xml_for("ct-export"))
    b.define(a.export_xml("ct-export"))
    assert "/srv/site-b/x.img" in b.export_xml("ct-export")
    assert "/srv/site-a/ct-export.img" in a.export_xml("ct-export")


def test_the_default_test_domain_is_seen_running(
    test_driver_pair: tuple[LibvirtHypervisor, LibvirtHypervisor],
) -> None:
    a, _ = test_driver_pair
    assert a.state("test") == VMState.RUNNING  # test:///default ships one running guest
    with pytest.raises(NoSuchVM, match="A: look up ct-nothing"):
        a.start("ct-nothing")


def test_unreachable_daemon_is_a_clear_error(tmp_path: Path) -> None:
    socket = tmp_path / "no-such-sock"
    hyp = LibvirtHypervisor.connect(
        f"qemu+unix:///system?socket={socket}", "A", connect_timeout=5.0
    )
    with pytest.raises(HypervisorError, match=f"could not connect to qemu\\+unix.*{socket}"):
        hyp.list()


def test_a_daemon_that_never_answers_cannot_hang_the_caller() -> None:
    """A TCP peer that accepts and then says nothing (a half-dead host, a black-holing
    middlebox): libvirt.open would wait for ever; the connect deadline ends it."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_stay_silent() -> None:
        server.settimeout(0.2)
        for _ in range(100):  # bounded: 20 s at most
            if stop.is_set():
                return
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_stay_silent, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    hyp = LibvirtHypervisor.connect(f"qemu+tcp://127.0.0.1:{port}/system", "A", connect_timeout=1.5)
    started = time.monotonic()
    try:
        with pytest.raises(HypervisorError, match=r"could not connect to .* within 1.5 s"):
            hyp.list()
        assert time.monotonic() - started < 5.0
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()  # the abandoned open() now fails and its thread ends
        server.close()


def test_the_model_gives_uris_and_the_per_node_disk_paths(tmp_path: Path) -> None:
    cluster = Cluster(
        name="c",
        sites=(
            Site("A", (Node("a1", libvirt_uri="test:///default"),)),
            Site(
                "B",
                (Node("b1", libvirt_uri="qemu+tls://b1.example/system"),),
            ),
        ),
        primary_site="A",
        volumes=(
            Volume(
                "db", Driver.DRBD, ReplicationMode.SYNC, 2**30, 7789,
                paths=MappingProxyType({"a1": "/dev/drbd0", "b1": "/dev/drbd1"}),
            ),
            Volume(
                "logs", Driver.PYREPL, ReplicationMode.ASYNC, 2**20, 7790,
                paths=MappingProxyType({"a1": "disks/logs-a.img", "b1": "disks/logs-b.img"}),
            ),
        ),
        hypervisor=Hypervisors(driver="libvirt"),
    )  # fmt: skip
    env = Environment(base_dir=tmp_path)
    b = LibvirtHypervisor(cluster, cluster.site("B"), env)
    assert b.uri == "qemu+tls://b1.example/system"
    assert b.peer_uri == "qemu+tls://b1.example/system"  # a network URI serves both
    assert b.migration_stream_uri() == "tcp://b1.example"
    assert b.path_map == {
        "/dev/drbd0": "/dev/drbd1",
        f"{tmp_path}/disks/logs-a.img": f"{tmp_path}/disks/logs-b.img",
    }
    a = LibvirtHypervisor(cluster, cluster.site("A"), env)
    try:
        assert a.peer_uri is None  # test:/// is not reachable from a peer
        assert a.state("test") == VMState.RUNNING
    finally:
        a.close()
