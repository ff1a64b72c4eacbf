"""The contract every `Hypervisor` passes: the fake, the sim, and libvirt.

Use it by subclassing in a test module and providing the `pair` fixture::

    class TestSimContract(HypervisorContract):
        @pytest.fixture
        def pair(self, tmp_path) -> Iterator[HypervisorPair]:
            yield HypervisorPair(source=..., dest=..., vm_xml=...)

`source` and `dest` are two independent sites (defining a VM at one must not define it
at the other). `vm_xml(name)` returns domain XML the driver can define and start.

Capabilities are explicit, never inferred from what is installed:

- `supports_migration` (class attribute): False only for a driver that cannot migrate
  at all, such as libvirt's `test:///default`; the migration tests are then skipped,
  and the skip message says so. A missing install is not a capability: fix the setup.
- `HypervisorPair.unresponsive_vm_xml`: XML of a guest that ignores a graceful shutdown
  (no ACPI); None if the driver cannot produce one, which skips that test.
- `HypervisorPair.failing_migration(name)`: arrange that migrating `name` fails, and
  return the options to migrate with (e.g. an unconvergeable guest and a short deadline
  without post-copy, or a scripted failure); required when `supports_migration`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from drorch.virt.base import (
    Hypervisor,
    HypervisorError,
    MigrationFailed,
    MigrationOptions,
    MigrationProgress,
    NoSuchVM,
    VMRunningElsewhere,
    VMState,
)


@dataclass
class HypervisorPair:
    source: Hypervisor
    dest: Hypervisor
    vm_xml: Callable[[str], str]
    unresponsive_vm_xml: Callable[[str], str] | None = None
    failing_migration: Callable[[str], MigrationOptions] | None = None
    migration_options: MigrationOptions = field(default_factory=MigrationOptions)
    shutdown_timeout: float = 30.0


class HypervisorContract:
    """Contract tests; see the module docstring."""

    supports_migration: ClassVar[bool] = True

    @pytest.fixture
    def pair(self) -> Iterator[HypervisorPair]:
        raise NotImplementedError("a contract subclass provides the `pair` fixture")

    def _running(self, pair: HypervisorPair, name: str) -> str:
        pair.source.define(pair.vm_xml(name))
        pair.source.start(name)
        assert pair.source.state(name) == VMState.RUNNING
        return name

    def _need_migration(self) -> None:
        if not self.supports_migration:
            pytest.skip("driver capability: supports_migration = False (cannot migrate)")

    # -- unknown VMs ------------------------------------------------------------------

    def test_contract_unknown_vm_is_undefined(self, pair: HypervisorPair) -> None:
        assert pair.source.state("drorch-no-such-vm") == VMState.UNDEFINED
        assert "drorch-no-such-vm" not in pair.source.list()

    @pytest.mark.parametrize("operation", ["start", "destroy", "export_xml"])
    def test_contract_unknown_vm_raises_no_such_vm(
        self, pair: HypervisorPair, operation: str
    ) -> None:
        with pytest.raises(NoSuchVM):
            getattr(pair.source, operation)("drorch-no-such-vm")

    def test_contract_define_rejects_garbage(self, pair: HypervisorPair) -> None:
        before = set(pair.source.list())
        with pytest.raises(HypervisorError):
            pair.source.define("<domain><name>broken")
        assert set(pair.source.list()) <= before  # (see cold_start_rejects_bad_xml)

    # -- lifecycle --------------------------------------------------------------------

    def test_contract_define_lists_shutoff_once(self, pair: HypervisorPair) -> None:
        assert pair.source.define(pair.vm_xml("ct-b")) == "ct-b"
        assert pair.source.define(pair.vm_xml("ct-a")) == "ct-a"
        assert pair.source.define(pair.vm_xml("ct-a")) == "ct-a"  # redefine: still once
        names = pair.source.list()
        assert names == sorted(names)
        assert names.count("ct-a") == 1 and "ct-b" in names
        assert pair.source.state("ct-a") == VMState.SHUTOFF
        assert "ct-a" not in pair.dest.list()

    def test_contract_redefine_keeps_a_running_vm_running(self, pair: HypervisorPair) -> None:
        name = self._running(pair, "ct-redefine")
        assert pair.source.define(pair.source.export_xml(name)) == name
        assert pair.source.state(name) == VMState.RUNNING

    def test_contract_start_is_idempotent(self, pair: HypervisorPair) -> None:
        name = self._running(pair, "ct-start")
        pair.source.start(name)
        assert pair.source.state(name) == VMState.RUNNING

    def test_contract_destroy_powers_off_and_is_idempotent(self, pair: HypervisorPair) -> None:
        name = self._running(pair, "ct-destroy")
        pair.source.destroy(name)
        assert pair.source.state(name) == VMState.SHUTOFF
        pair.source.destroy(name)
        assert pair.source.state(name) == VMState.SHUTOFF
        assert name in pair.source.list()  # destroy powers off, it does not undefine

    def test_contract_shutdown_graceful(self, pair: HypervisorPair) -> None:
        name = self._running(pair, "ct-shutdown")
        result = pair.source.shutdown(name, pair.shutdown_timeout)
        assert result.graceful is True
        assert 0 <= result.seconds <= pair.shutdown_timeout
        assert pair.source.state(name) == VMState.SHUTOFF

    def test_contract_shutdown_not_running_is_noop(self, pair: HypervisorPair) -> None:
        pair.source.define(pair.vm_xml("ct-off"))
        result = pair.source.shutdown("ct-off", pair.shutdown_timeout)
        assert result.graceful is True
        assert pair.source.state("ct-off") == VMState.SHUTOFF

    def test_contract_shutdown_destroys_after_timeout(self, pair: HypervisorPair) -> None:
        if pair.unresponsive_vm_xml is None:
            pytest.skip("driver capability: cannot make a guest that ignores shutdown")
        pair.source.define(pair.unresponsive_vm_xml("ct-stubborn"))
        pair.source.start("ct-stubborn")
        result = pair.source.shutdown("ct-stubborn", 0.5)
        assert result.graceful is False
        assert pair.source.state("ct-stubborn") == VMState.SHUTOFF

    def test_contract_export_xml_defines_at_other_site(self, pair: HypervisorPair) -> None:
        pair.source.define(pair.vm_xml("ct-export"))
        xml = pair.source.export_xml("ct-export")
        assert "ct-export" in xml
        assert pair.dest.define(xml) == "ct-export"
        assert pair.dest.state("ct-export") == VMState.SHUTOFF

    # -- cold failover ----------------------------------------------------------------

    def test_contract_cold_start_refused_while_running_elsewhere(
        self, pair: HypervisorPair
    ) -> None:
        name = self._running(pair, "ct-cold-busy")
        xml = pair.source.export_xml(name)
        with pytest.raises(VMRunningElsewhere, match=f"{name}.*running"):
            pair.dest.cold_start(xml, [pair.source])
        assert pair.dest.state(name) == VMState.UNDEFINED
        assert pair.source.state(name) == VMState.RUNNING

    def test_contract_cold_start_after_source_is_down(self, pair: HypervisorPair) -> None:
        name = self._running(pair, "ct-cold")
        xml = pair.source.export_xml(name)
        pair.source.destroy(name)
        result = pair.dest.cold_start(xml, [pair.source])
        assert result.vm == name and result.site == pair.dest.site
        assert result.checked_sites == (pair.source.site,)
        assert f"started {name} at site {pair.dest.site}" in result.reason
        assert pair.dest.state(name) == VMState.RUNNING

    def test_contract_cold_start_redefines_a_stopped_copy(self, pair: HypervisorPair) -> None:
        name = self._running(pair, "ct-cold-again")
        xml = pair.source.export_xml(name)
        pair.dest.define(xml)  # an old definition left at the DR site
        pair.source.destroy(name)
        pair.dest.cold_start(xml, [pair.source])
        assert pair.dest.state(name) == VMState.RUNNING
        assert pair.dest.list().count(name) == 1

    def test_contract_cold_start_rejects_bad_xml(self, pair: HypervisorPair) -> None:
        before = set(pair.dest.list())
        with pytest.raises(HypervisorError):
            pair.dest.cold_start("<domain><name>", [pair.source])
        # nothing was defined; a guest an earlier test left dying may still go away
        assert set(pair.dest.list()) <= before

    # -- live migration ---------------------------------------------------------------

    def test_contract_migrate_moves_the_vm(self, pair: HypervisorPair) -> None:
        self._need_migration()
        name = self._running(pair, "ct-migrate")
        samples: list[MigrationProgress] = []
        result = pair.source.migrate_live(name, pair.dest, pair.migration_options, samples.append)
        assert result.converged or result.postcopy
        assert result.reason
        assert samples, "progress is reported at least once"
        assert pair.dest.state(name) == VMState.RUNNING
        assert pair.dest.list().count(name) == 1
        assert pair.source.state(name) == VMState.UNDEFINED  # UNDEFINE_SOURCE
        assert name not in pair.source.list()

    def test_contract_migrate_round_trip(self, pair: HypervisorPair) -> None:
        """The weekly drill: over to dest and back, without a progress callback."""
        self._need_migration()
        name = self._running(pair, "ct-round-trip")
        pair.source.migrate_live(name, pair.dest, pair.migration_options)
        back = pair.dest.migrate_live(name, pair.source, pair.migration_options)
        assert back.converged or back.postcopy
        assert pair.source.state(name) == VMState.RUNNING
        assert pair.dest.state(name) == VMState.UNDEFINED

    def test_contract_failed_migration_leaves_vm_at_source(self, pair: HypervisorPair) -> None:
        self._need_migration()
        assert pair.failing_migration is not None, "a migrating driver says how to fail one"
        name = self._running(pair, "ct-fail")
        options = pair.failing_migration(name)
        with pytest.raises(MigrationFailed) as failure:
            pair.source.migrate_live(name, pair.dest, options)
        assert str(failure.value)
        assert pair.source.state(name) == VMState.RUNNING
        assert pair.dest.state(name) == VMState.UNDEFINED  # defined once, at the source
        assert pair.source.list().count(name) == 1

    def test_contract_migrate_refuses_a_stopped_vm(self, pair: HypervisorPair) -> None:
        self._need_migration()
        pair.source.define(pair.vm_xml("ct-stopped"))
        with pytest.raises(MigrationFailed):
            pair.source.migrate_live("ct-stopped", pair.dest, pair.migration_options)
        assert pair.source.state("ct-stopped") == VMState.SHUTOFF
        assert pair.dest.state("ct-stopped") == VMState.UNDEFINED

    def test_contract_migrate_unknown_vm(self, pair: HypervisorPair) -> None:
        self._need_migration()
        with pytest.raises(NoSuchVM):
            pair.source.migrate_live("drorch-no-such-vm", pair.dest, pair.migration_options)
