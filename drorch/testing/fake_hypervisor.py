"""An in-memory Hypervisor for tests, with scriptable migration outcomes and faults.

    a, b = FakeHypervisor("A"), FakeHypervisor("B")
    a.define(fake_domain_xml("web")); a.start("web")
    a.script_migration(ScriptedMigration(fail="link down at 40 %"))
    with pytest.raises(MigrationFailed): a.migrate_live("web", b, MigrationOptions())
    a.unreachable = True        # every call now raises SiteUnreachable

It passes the same `HypervisorContract` as the real drivers. A guest whose XML lacks
`<features><acpi/>` ignores a graceful shutdown (as under QEMU), so `shutdown` destroys
it when the timeout runs out.
"""

from __future__ import annotations

import builtins
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field

from drorch.clock import Clock
from drorch.virt.base import (
    Hypervisor,
    HypervisorError,
    MigrationFailed,
    MigrationOptions,
    MigrationProgress,
    MigrationResult,
    NoSuchVM,
    ProgressCallback,
    ShutdownResult,
    VMState,
    domain_name,
)


class SiteUnreachable(HypervisorError):
    """The fake site was told to be unreachable (a lost site or a partition)."""


def fake_domain_xml(name: str, *, acpi: bool = True, memory_mib: int = 128) -> str:
    features = "<features><acpi/></features>" if acpi else ""
    return (
        f"<domain type='qemu'><name>{name}</name>"
        f"<memory unit='MiB'>{memory_mib}</memory>{features}</domain>"
    )


@dataclass
class ScriptedMigration:
    """The outcome of the next migrate_live call. `fail` set: MigrationFailed with that
    message after the progress samples, the VM left at the source. Otherwise success
    with `result` (or a default converged result)."""

    progress: Sequence[MigrationProgress] = ()
    result: MigrationResult | None = None
    fail: str | None = None


@dataclass
class FakeVM:
    xml: str
    state: VMState = VMState.SHUTOFF
    acpi: bool = True


@dataclass
class MigrationCall:
    vm: str
    dest: str
    options: MigrationOptions


DEFAULT_RESULT = MigrationResult(
    converged=True,
    postcopy=False,
    total_seconds=1.0,
    downtime_ms=20,
    final_max_downtime_ms=300,
    iterations=2,
    data_transferred=128 * 1024 * 1024,
    reason="converged after 2 iterations (fake)",
)


def _progress_for(result: MigrationResult) -> MigrationProgress:
    return MigrationProgress(
        elapsed=result.total_seconds,
        data_processed=result.data_transferred,
        data_remaining=0,
        data_total=result.data_transferred,
        dirty_rate=0,
        iteration=result.iterations,
        expected_downtime_ms=result.downtime_ms or 0,
        max_downtime_ms=result.final_max_downtime_ms,
    )


@dataclass
class FakeHypervisor(Hypervisor):
    site: str = "A"
    clock: Clock | None = None
    shutdown_seconds: float = 1.0
    unreachable: bool = False
    vms: dict[str, FakeVM] = field(default_factory=dict)
    migrations: builtins.list[MigrationCall] = field(default_factory=list)
    _script: builtins.list[ScriptedMigration] = field(default_factory=list)

    def script_migration(self, *outcomes: ScriptedMigration) -> None:
        """Queue outcomes for the next migrate_live calls, in order."""
        self._script.extend(outcomes)

    def _reach(self) -> None:
        if self.unreachable:
            raise SiteUnreachable(f"site {self.site} is unreachable")

    def _vm(self, vm: str) -> FakeVM:
        self._reach()
        record = self.vms.get(vm)
        if record is None:
            raise NoSuchVM(f"{vm} is not defined at site {self.site}")
        return record

    def list(self) -> builtins.list[str]:
        self._reach()
        return sorted(self.vms)

    def state(self, vm: str) -> VMState:
        self._reach()
        record = self.vms.get(vm)
        return VMState.UNDEFINED if record is None else record.state

    def define(self, xml: str) -> str:
        self._reach()
        name = domain_name(xml)
        acpi = ET.fromstring(xml).find("features/acpi") is not None
        previous = self.vms.get(name)
        state = previous.state if previous else VMState.SHUTOFF
        self.vms[name] = FakeVM(xml, state, acpi)
        return name

    def start(self, vm: str) -> None:
        self._vm(vm).state = VMState.RUNNING

    def shutdown(self, vm: str, timeout: float) -> ShutdownResult:
        record = self._vm(vm)
        if record.state != VMState.RUNNING:
            return ShutdownResult(graceful=True, seconds=0.0)
        graceful = record.acpi and self.shutdown_seconds <= timeout
        seconds = self.shutdown_seconds if graceful else timeout
        if self.clock is not None:
            self.clock.sleep(seconds)
        record.state = VMState.SHUTOFF
        return ShutdownResult(graceful=graceful, seconds=seconds)

    def destroy(self, vm: str) -> None:
        self._vm(vm).state = VMState.SHUTOFF

    def export_xml(self, vm: str) -> str:
        return self._vm(vm).xml

    def migrate_live(
        self,
        vm: str,
        dest: Hypervisor,
        options: MigrationOptions,
        progress: ProgressCallback | None = None,
    ) -> MigrationResult:
        record = self._vm(vm)
        if not isinstance(dest, FakeHypervisor):
            raise MigrationFailed(f"the fake cannot migrate {vm} to a {type(dest).__name__}")
        if dest is self:
            raise MigrationFailed(f"{vm}: source and destination are both site {self.site}")
        if record.state != VMState.RUNNING:
            raise MigrationFailed(f"{vm} is {record.state} at site {self.site}, not running")
        self.migrations.append(MigrationCall(vm, dest.site, options))
        if dest.unreachable:
            raise MigrationFailed(f"cannot reach site {dest.site}: {vm} stays at {self.site}")
        if dest.state(vm) in (VMState.RUNNING, VMState.PAUSED):
            raise MigrationFailed(f"{vm} is already running at site {dest.site}")
        script = self._script.pop(0) if self._script else ScriptedMigration()
        result = script.result or DEFAULT_RESULT
        samples = script.progress or ([] if script.fail else [_progress_for(result)])
        for sample in samples:
            if progress is not None:
                progress(sample)
        if script.fail is not None:
            raise MigrationFailed(script.fail, script.result)
        dest.vms[vm] = FakeVM(options.dest_xml or record.xml, VMState.RUNNING, record.acpi)
        del self.vms[vm]
        return result
