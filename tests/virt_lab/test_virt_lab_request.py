"""The flags and parameters of a live migration, with libvirt's real constants."""

from __future__ import annotations

import libvirt
import pytest

from drorch.virt.base import MigrationOptions
from drorch.virt.libvirt_request import Localize, MigrationRequest, migration_request
from drorch.virt.xmlmap import remap_disks

BASE = (
    libvirt.VIR_MIGRATE_LIVE
    | libvirt.VIR_MIGRATE_PEER2PEER
    | libvirt.VIR_MIGRATE_PERSIST_DEST
    | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
)
FILE_DISK = (
    "<domain><name>vm</name><devices><disk type='file' device='disk'>"
    "<source file='/a/vm.img'/><target dev='vda'/></disk></devices></domain>"
)
NBD_DISK = (
    "<domain><name>vm</name><devices><disk type='network' device='disk'>"
    "<source protocol='nbd' name='vm'><host name='10.0.0.1' port='10809'/></source>"
    "<target dev='vda'/></disk></devices></domain>"
)


def no_remap(xml: str) -> tuple[str, list[str]]:
    return xml, []


def to_b(xml: str) -> tuple[str, list[str]]:
    return remap_disks(xml, {"/a/vm.img": "/b/vm.img"})


def request(
    options: MigrationOptions, xml: str = NBD_DISK, localize: Localize = no_remap
) -> MigrationRequest:
    return migration_request(libvirt, options, xml, xml, localize, "tcp://10.0.0.2")


@pytest.mark.parametrize(
    ("options", "xml", "extra"),
    [
        (MigrationOptions(auto_converge=False), NBD_DISK, 0),
        (MigrationOptions(auto_converge=False), FILE_DISK, 0),  # shared_storage asserted
        (
            MigrationOptions(auto_converge=False, shared_storage=False),
            FILE_DISK,
            libvirt.VIR_MIGRATE_NON_SHARED_DISK,
        ),
        (
            MigrationOptions(auto_converge=False, shared_storage=False),
            NBD_DISK,  # an NBD export is shared storage
            0,
        ),
        (MigrationOptions(), NBD_DISK, libvirt.VIR_MIGRATE_AUTO_CONVERGE),
        (
            MigrationOptions(auto_converge=False, allow_postcopy=True),
            NBD_DISK,
            libvirt.VIR_MIGRATE_POSTCOPY,
        ),
    ],
)
def test_flags(options: MigrationOptions, xml: str, extra: int) -> None:
    assert request(options, xml).flags == BASE | extra


def test_parameters_carry_stream_uri_and_bandwidth() -> None:
    got = request(MigrationOptions(bandwidth_mibps=40))
    assert got.params == {
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://10.0.0.2",
        libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 40,
    }
    assert "bandwidth limited to 40 MiB/s" in got.reasons
    override = request(MigrationOptions(dest_uri="tcp://192.0.2.9:49200"))
    assert override.params[libvirt.VIR_MIGRATE_PARAM_URI] == "tcp://192.0.2.9:49200"


def test_remapped_disks_send_destination_and_persistent_xml() -> None:
    got = request(MigrationOptions(), FILE_DISK, to_b)
    assert "/b/vm.img" in got.params[libvirt.VIR_MIGRATE_PARAM_DEST_XML]
    assert "/b/vm.img" in got.params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML]
    assert "disks remapped for the destination: vda: /a/vm.img -> /b/vm.img" in got.reasons


def test_nothing_to_remap_sends_no_xml() -> None:
    got = request(MigrationOptions(), FILE_DISK, no_remap)
    assert libvirt.VIR_MIGRATE_PARAM_DEST_XML not in got.params
    assert got.reasons[0].startswith("local disks vda (/a/vm.img) are on shared")
