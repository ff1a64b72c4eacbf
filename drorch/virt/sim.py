"""The simulated hypervisor: the embedded default (`make demo`) and the fast tests.

VMs are records in one JSON file per site under `cluster.hypervisor.state_dir` (resolved
against `env.base_dir`). The first time a site's file is created, the VMs of `cluster.vms`
are defined and running there if it is `cluster.primary_site`; other sites start empty.

Domain XML is ordinary libvirt XML; the sim reads `<name>`, `<memory unit=...>`,
`<features><acpi/>` (a guest without ACPI ignores a graceful shutdown, as under QEMU) and
optional simulation knobs in `<metadata>`::

    <metadata><sim:guest xmlns:sim="urn:drorch:sim" dirty_rate_mibps="8"
        working_set_mib="64" shutdown_seconds="1"/></metadata>

Knobs not in the XML come from the cluster's VM of that domain name (`memory_mib`,
`dirty_rate_mibps`). Live migration runs `drorch.virt.precopy` with the same
`ConvergencePolicy` as the libvirt driver. Simulated time runs `speedup` times faster
than `env.clock` (20× by default, so a demo on the real clock stays short; tests pass
`speedup=1` with a FakeClock). Every time and downtime reported is simulated seconds.

`power_loss()` simulates losing a site (a `sim-<site>.down` marker every process sees):
its VMs stop, every call to it raises SimSiteDown, and a migration from or to it fails
at the next progress sample; `power_restore()` brings it back with its VMs off.
"""

from __future__ import annotations

import builtins
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from drorch.environment import Environment
from drorch.model.types import VM, Cluster, Site
from drorch.virt.base import (
    Hypervisor,
    HypervisorError,
    MigrationFailed,
    MigrationOptions,
    MigrationResult,
    NoSuchVM,
    ProgressCallback,
    ShutdownResult,
    VMRunningElsewhere,
    VMState,
    domain_name,
)
from drorch.virt.precopy import LinkModel, PrecopyAborted, PrecopySimulation
from drorch.virt.sim_store import Records, SimStateError, SimStateStore, update_both

SIM_NS = "urn:drorch:sim"
MIB = 1024 * 1024
_UNIT_BYTES = {
    "b": 1, "bytes": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": MIB, "mib": MIB,
    "mb": 1000**2, "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
}  # fmt: skip
DEFAULT_SHUTDOWN_SECONDS = 1.0
DEFAULT_SPEEDUP = 20.0


class SimSiteDown(HypervisorError):
    """The simulated site is lost (see `SimHypervisor.power_loss`)."""


@dataclass(frozen=True)
class SimGuest:
    """What the simulation needs to know about one guest."""

    name: str
    memory: int  # bytes
    dirty_rate: float  # bytes/s
    working_set: int  # bytes
    acpi: bool
    shutdown_seconds: float

    @classmethod
    def from_xml(cls, xml: str, model: VM | None = None) -> SimGuest:
        name = domain_name(xml)
        root = ET.fromstring(xml)
        memory = (model.memory_mib if model else 128) * MIB
        mem_el = root.find("memory")
        if mem_el is not None and (mem_el.text or "").strip():
            unit = mem_el.get("unit", "KiB").lower()
            if unit not in _UNIT_BYTES:
                raise HypervisorError(f"{name}: unknown memory unit {unit!r}")
            try:
                memory = int(float(mem_el.text or "") * _UNIT_BYTES[unit])
            except ValueError:
                raise HypervisorError(f"{name}: <memory> is not a number") from None
        knobs = root.find(f"metadata/{{{SIM_NS}}}guest")
        get = knobs.get if knobs is not None else (lambda _key: None)
        try:
            dirty = float(get("dirty_rate_mibps") or (model.dirty_rate_mibps if model else 8.0))
            working_set = int(float(get("working_set_mib") or 0) * MIB) or memory
            shutdown = float(get("shutdown_seconds") or DEFAULT_SHUTDOWN_SECONDS)
        except ValueError:
            raise HypervisorError(f"{name}: a sim:guest knob is not a number") from None
        if memory <= 0 or dirty < 0 or shutdown < 0:
            raise HypervisorError(f"{name}: memory must be positive, rates non-negative")
        acpi = root.find("features/acpi") is not None
        return cls(name, memory, dirty * MIB, min(working_set, memory), acpi, shutdown)


def sim_domain_xml(vm: VM, cluster: Cluster | None = None, site: str | None = None) -> str:
    """A minimal domain XML for a cluster VM (what the sim defines on first use): with
    `cluster` and `site`, a disk per volume (its replica at that site's node) and an
    interface on the site's first network, as a real definition at that site has."""
    devices = ""
    if cluster is not None and site is not None:
        nodes = [n.name for n in cluster.site(site).nodes]
        for i, name in enumerate(vm.volumes):
            volume = next((v for v in cluster.volumes if v.name == name), None)
            path = (
                next((volume.paths[n] for n in nodes if n in volume.paths), None)
                if volume
                else None
            )
            if path is not None:
                devices += (
                    f"    <disk type='file' device='disk'><source file='{escape(path)}'/>"
                    f"<target dev='vd{chr(ord('a') + i)}' bus='virtio'/></disk>\n"
                )
        networks = list(cluster.site(site).networks.values())
        if networks:
            devices += (
                f"    <interface type='bridge'><source bridge='{escape(networks[0])}'/>"
                "</interface>\n"
            )
    return (
        f"<domain type='qemu'>\n  <name>{escape(vm.domain)}</name>\n"
        f"  <memory unit='MiB'>{vm.memory_mib}</memory>\n  <vcpu>1</vcpu>\n"
        f"  <features><acpi/></features>\n"
        + (f"  <devices>\n{devices}  </devices>\n" if devices else "")
        + f"  <metadata><sim:guest xmlns:sim='{SIM_NS}' "
        f"dirty_rate_mibps='{vm.dirty_rate_mibps:g}'/></metadata>\n</domain>\n"
    )


class SimHypervisor(Hypervisor):
    """The VMs of one simulated site."""

    def __init__(
        self, cluster: Cluster, site: Site, env: Environment, *, speedup: float = DEFAULT_SPEEDUP
    ) -> None:
        if speedup <= 0:
            raise ValueError("speedup must be positive")
        self.cluster = cluster
        self.site = site.name
        self.env = env
        self.speedup = speedup
        self.state_dir = Path(env.base_dir) / cluster.hypervisor.state_dir
        self.store = SimStateStore(self.state_dir, self.site)
        self._initialise()

    # -- state ------------------------------------------------------------------------

    def _initialise(self) -> None:
        if self.store.exists:
            return
        initial: Records = {}
        if self.site == self.cluster.primary_site:
            for vm in self.cluster.vms:
                initial[vm.domain] = {"xml": self._initial_xml(vm), "state": "running"}
        self.store.create_if_missing(initial)

    def _initial_xml(self, vm: VM) -> str:
        if vm.xml:
            path = Path(self.env.base_dir) / vm.xml
            if path.is_file():
                return path.read_text(encoding="utf-8")
            if vm.xml.lstrip().startswith("<"):
                return vm.xml
        return sim_domain_xml(vm, self.cluster, self.site)

    def _model(self, name: str) -> VM | None:
        return next((v for v in self.cluster.vms if v.domain == name), None)

    def _record(self, vm: str) -> dict[str, str]:
        self._reach()
        record = self.store.get(vm)
        if record is None:
            raise NoSuchVM(f"{vm} is not defined at site {self.site}")
        return record

    def _reach(self) -> None:
        if self.store.is_down:
            raise SimSiteDown(f"site {self.site} is down (simulated power loss)")

    def power_loss(self) -> builtins.list[str]:
        """Simulate losing the whole site: every VM there stops at once and the site
        answers nothing until `power_restore()`. Returns the VMs that were running."""
        with self.store.update() as records:
            stopped = sorted(n for n, r in records.items() if r["state"] != VMState.SHUTOFF)
            for name in stopped:
                records[name]["state"] = VMState.SHUTOFF.value
        self.store.set_down(True)
        return stopped

    def power_restore(self) -> None:
        """The site is back; its VMs stay off (no autostart), as after a real outage."""
        self.store.set_down(False)

    def _sleep(self, simulated_seconds: float) -> None:
        self.env.clock.sleep(simulated_seconds / self.speedup)

    def _peer_stores(self) -> builtins.list[SimStateStore]:
        stores = []
        for path in sorted(self.state_dir.glob("sim-*.json")):
            site = path.stem.removeprefix("sim-")
            if site != self.site:
                stores.append(SimStateStore(self.state_dir, site))
        return stores

    # -- Hypervisor -------------------------------------------------------------------

    def list(self) -> builtins.list[str]:
        self._reach()
        return sorted(self.store.read())

    def state(self, vm: str) -> VMState:
        self._reach()
        record = self.store.get(vm)
        return VMState.UNDEFINED if record is None else VMState(record["state"])

    def define(self, xml: str) -> str:
        self._reach()
        guest = SimGuest.from_xml(xml, None)  # validates before anything is written
        with self.store.update() as records:
            previous = records.get(guest.name)
            state = previous["state"] if previous else VMState.SHUTOFF.value
            records[guest.name] = {"xml": xml, "state": state}
        return guest.name

    def start(self, vm: str) -> None:
        if self.state(vm) == VMState.UNDEFINED:
            raise NoSuchVM(f"{vm} is not defined at site {self.site}")
        for peer in self._peer_stores():
            if peer.is_down:
                continue  # a lost site runs nothing
            try:
                record = peer.get(vm)
            except SimStateError:
                continue  # a site we cannot read we cannot see (cold_start reports it)
            if record and record["state"] in (VMState.RUNNING, VMState.PAUSED):
                raise VMRunningElsewhere(
                    f"refusing to start {vm} at site {self.site}: it is {record['state']} "
                    f"at site {peer.site}"
                )
        with self.store.update() as records:
            if vm not in records:
                raise NoSuchVM(f"{vm} is not defined at site {self.site}")
            records[vm]["state"] = VMState.RUNNING.value

    def shutdown(self, vm: str, timeout: float) -> ShutdownResult:
        record = self._record(vm)
        if record["state"] != VMState.RUNNING:
            return ShutdownResult(graceful=True, seconds=0.0)
        guest = SimGuest.from_xml(record["xml"], self._model(vm))
        graceful = guest.acpi and guest.shutdown_seconds <= timeout
        seconds = guest.shutdown_seconds if graceful else timeout
        self._sleep(seconds)
        with self.store.update() as records:
            if vm in records:
                records[vm]["state"] = VMState.SHUTOFF.value
        return ShutdownResult(graceful=graceful, seconds=seconds)

    def destroy(self, vm: str) -> None:
        self._reach()
        with self.store.update() as records:
            if vm not in records:
                raise NoSuchVM(f"{vm} is not defined at site {self.site}")
            records[vm]["state"] = VMState.SHUTOFF.value

    def undefine(self, vm: str) -> None:
        self._reach()
        with self.store.update() as records:
            if vm not in records:
                raise NoSuchVM(f"{vm} is not defined at site {self.site}")
            if records[vm]["state"] in (VMState.RUNNING.value, VMState.PAUSED.value):
                raise HypervisorError(f"{vm} is {records[vm]['state']} at site {self.site}")
            del records[vm]

    def export_xml(self, vm: str) -> str:
        return self._record(vm)["xml"]

    def migrate_live(
        self,
        vm: str,
        dest: Hypervisor,
        options: MigrationOptions,
        progress: ProgressCallback | None = None,
    ) -> MigrationResult:
        record = self._record(vm)
        if not isinstance(dest, SimHypervisor):
            raise MigrationFailed(f"the sim cannot migrate {vm} to a {type(dest).__name__}")
        if dest.store.path == self.store.path:
            raise MigrationFailed(f"{vm}: source and destination are both site {self.site}")
        if record["state"] != VMState.RUNNING:
            raise MigrationFailed(f"{vm} is {record['state']} at site {self.site}, not running")
        try:
            there = dest.state(vm)
        except (SimStateError, SimSiteDown) as exc:
            raise MigrationFailed(f"cannot use site {dest.site}: {exc}") from None
        if there in (VMState.RUNNING, VMState.PAUSED):
            raise MigrationFailed(f"{vm} is already running at site {dest.site}")
        dest_xml = options.dest_xml or record["xml"]
        if domain_name(dest_xml) != vm:
            raise MigrationFailed(f"the destination XML names another domain than {vm}")
        guest = SimGuest.from_xml(record["xml"], self._model(vm))
        bandwidth = options.bandwidth_mibps or self.cluster.hypervisor.bandwidth_mibps
        link = LinkModel(guest.memory, guest.dirty_rate, guest.working_set, bandwidth * MIB)
        simulation = PrecopySimulation(link, options)
        try:
            for sample in simulation.run():
                self._sleep(sample.step)
                if progress is not None:
                    progress(sample.progress)
                self._check_link(vm, dest, sample.progress.elapsed)
        except PrecopyAborted as aborted:
            raise MigrationFailed(aborted.result.reason, aborted.result) from None
        result = simulation.result
        if result is None:  # pragma: no cover - run() always sets it or raises
            raise MigrationFailed(f"{vm}: the simulation ended without a result")
        try:
            self._hand_over(vm, dest, dest_xml)
        except SimStateError as exc:  # nothing was written: the VM stays at the source
            raise MigrationFailed(f"hand-over to site {dest.site} failed: {exc}") from None
        return result

    def _check_link(self, vm: str, dest: SimHypervisor, elapsed: float) -> None:
        if self.store.is_down:
            raise MigrationFailed(
                f"site {self.site} was lost {elapsed:.1f}s into the migration: {vm} is down"
            )
        if dest.store.is_down:
            raise MigrationFailed(
                f"lost site {dest.site} {elapsed:.1f}s into the migration: {vm} keeps "
                f"running at {self.site}"
            )

    def _hand_over(self, vm: str, dest: SimHypervisor, dest_xml: str) -> None:
        """PERSIST_DEST | UNDEFINE_SOURCE: running and defined at dest only."""
        with update_both(self.store, dest.store) as (source_records, dest_records):
            if vm not in source_records:
                raise MigrationFailed(
                    f"{vm} left site {self.site} during the migration (moved by another "
                    "migration or undefined?); nothing was changed at the destination"
                )
            if source_records[vm]["state"] != VMState.RUNNING:
                raise MigrationFailed(f"{vm} stopped at site {self.site} during migration")
            dest_records[vm] = {"xml": dest_xml, "state": VMState.RUNNING.value}
            del source_records[vm]
