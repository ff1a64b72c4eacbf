"""The hypervisor contract on the fake and on the simulated hypervisor."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drorch.environment import Environment
from drorch.testing.contract_hypervisor import HypervisorPair
from drorch.testing.contracts import HypervisorContract
from drorch.testing.fake_hypervisor import FakeHypervisor, ScriptedMigration, fake_domain_xml
from drorch.virt.base import MigrationOptions
from drorch.virt.sim import SIM_NS

from .conftest import sim_pair, two_site_cluster


class TestFakeHypervisorContract(HypervisorContract):
    @pytest.fixture
    def pair(self) -> Iterator[HypervisorPair]:
        source, dest = FakeHypervisor("A"), FakeHypervisor("B")

        def failing(name: str) -> MigrationOptions:
            source.script_migration(ScriptedMigration(fail=f"{name}: scripted link failure"))
            return MigrationOptions()

        yield HypervisorPair(
            source=source,
            dest=dest,
            vm_xml=fake_domain_xml,
            unresponsive_vm_xml=lambda name: fake_domain_xml(name, acpi=False),
            failing_migration=failing,
        )


def sim_xml(name: str, *, acpi: bool = True, memory_mib: int = 256, dirty: float = 16) -> str:
    features = "<features><acpi/></features>" if acpi else ""
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>{memory_mib}</memory>"
        f"{features}<metadata><sim:guest xmlns:sim='{SIM_NS}' dirty_rate_mibps='{dirty}'/>"
        "</metadata></domain>"
    )


class TestSimHypervisorContract(HypervisorContract):
    @pytest.fixture
    def pair(self, env: Environment) -> Iterator[HypervisorPair]:
        source, dest = sim_pair(two_site_cluster(), env)

        def failing(name: str) -> MigrationOptions:
            # A guest dirtying memory faster than the link carries, with no way out.
            source.define(sim_xml(name, memory_mib=8192, dirty=4000))
            return MigrationOptions(deadline=20.0, adaptive=False, auto_converge=False)

        yield HypervisorPair(
            source=source,
            dest=dest,
            vm_xml=sim_xml,
            unresponsive_vm_xml=lambda name: sim_xml(name, acpi=False),
            failing_migration=failing,
        )
