"""The hypervisor contract on real libvirtd + QEMU in the lab: the same tests the fake,
the sim and libvirt's test driver pass, here with real guests, real migrations
(peer-to-peer across the WAN bridge) and a real graceful shutdown (ACPI)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drorch.lab.guest import GuestSpec, domain_xml
from drorch.testing.contract_hypervisor import HypervisorContract, HypervisorPair
from drorch.virt.base import MigrationOptions
from tests.virt_lab.conftest import RunningLab, discard

pytestmark = pytest.mark.lab


class TestLibvirtQemuContract(HypervisorContract):
    supports_migration = True

    @pytest.fixture
    def pair(self, running_lab: RunningLab) -> Iterator[HypervisorPair]:
        a, b = running_lab.a, running_lab.b

        def guest_xml(name: str, *, acpi: bool = True) -> str:
            log = running_lab.layout.guest_dir / f"{name}.serial.log"
            spec = GuestSpec(name, cmdline="hb=0.5", acpi=acpi)
            return domain_xml(spec, running_lab.image, log)

        def failing_migration(_: str) -> MigrationOptions:
            # ~80 MiB at 4 MiB/s cannot finish before a 3 s deadline
            return MigrationOptions(bandwidth_mibps=4, deadline=3.0)

        try:
            yield HypervisorPair(
                source=a,
                dest=b,
                vm_xml=guest_xml,
                unresponsive_vm_xml=lambda name: guest_xml(name, acpi=False),
                failing_migration=failing_migration,
                migration_options=MigrationOptions(deadline=60.0),
                shutdown_timeout=30.0,
            )
        finally:
            for name in {*a.list(), *b.list()}:
                if name.startswith("ct-"):
                    discard(running_lab, name)
