"""The cluster's VMs across both sites: where each runs, and the operations an operator
runs on them (live migration, cold failover start, start/stop) with the cross-site
safety checks a single hypervisor cannot make. Used by `drorch vm` and runbook steps.

Sites whose hypervisor cannot be opened or asked are "unreachable": listed as such,
never guessed to be stopped, except where the operator forces it.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drorch.environment import Environment
from drorch.model.types import VM, Cluster, MigrationPolicy
from drorch.virt.base import (
    ColdStartResult,
    Hypervisor,
    HypervisorError,
    MigrationFailed,
    MigrationOptions,
    MigrationResult,
    ProgressCallback,
    ShutdownResult,
    VMRunningElsewhere,
    VMState,
)
from drorch.virt.failover_checks import Refusal, migrate_refusals, volume_refusals
from drorch.virt.xml_store import SavedXML, XMLStore
from drorch.virt.xmlmap import for_site

ACTIVE = (VMState.RUNNING, VMState.PAUSED)


SIMULATED = "yes: driver sim, no guest moved; times and downtime are the simulator's model"


class VMOperationRefused(HypervisorError):
    """The operation is unsafe or impossible as asked; nothing was changed."""


class UnknownName(VMOperationRefused):
    """A VM or site the cluster does not have (a usage error, not a safety refusal)."""


class VolumesNotOpen(VMOperationRefused):
    """A live migration whose target cannot write the VM's volumes (not primary there:
    no dual-primary hand-over open); the VM did not move. `refusals` are the codes."""

    def __init__(self, refusals: list[Refusal]) -> None:
        super().__init__("; ".join(f"{r.code}: {r.message}" for r in refusals))
        self.refusals = refusals


def migration_options(policy: MigrationPolicy, **overrides: Any) -> MigrationOptions:
    """The cluster's migration policy as MigrationOptions; `None` overrides are ignored."""
    return MigrationOptions.from_policy(
        policy, **{k: v for k, v in overrides.items() if v is not None}
    )


@dataclass(frozen=True)
class MigrationReport:
    vm: str
    domain: str
    source: str
    dest: str
    ok: bool
    result: MigrationResult | None
    reason: str
    simulated: bool = False  # the sim driver's model: no guest moved, its times are modelled

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        label = {"simulated": SIMULATED} if self.simulated else {}
        return {
            **label,
            "vm": self.vm,
            "domain": self.domain,
            "from": self.source,
            "to": self.dest,
            "result": "migrated" if self.ok else "failed",
            "converged": r.converged if r else False,
            "postcopy": r.postcopy if r else False,
            "downtime_ms": r.downtime_ms if r else None,
            "total_seconds": round(r.total_seconds, 3) if r else None,
            "iterations": r.iterations if r else None,
            "final_max_downtime_ms": r.final_max_downtime_ms if r else None,
            "transferred_mib": round(r.data_transferred / 2**20, 1) if r else None,
            "running_at": self.dest if self.ok else self.source,
            "reason": self.reason,
        }


class ClusterVMs:
    def __init__(
        self, cluster: Cluster, env: Environment, unavailable: dict[str, str] | None = None
    ) -> None:
        """`unavailable`: site -> why its hypervisor could not be set up."""
        self.cluster = cluster
        self.env = env
        self.unavailable = dict(unavailable or {})

    def vm(self, name: str) -> VM:
        """A VM by its model name or its domain name."""
        for vm in self.cluster.vms:
            if name in (vm.name, vm.domain):
                return vm
        known = ", ".join(v.name for v in self.cluster.vms) or "none"
        raise UnknownName(f"no VM {name!r} in cluster {self.cluster.name} ({known})")

    def hypervisor(self, site: str) -> Hypervisor:
        self.cluster.site(site)  # KeyError for a site not in the model
        try:
            return self.env.hypervisor(site)
        except KeyError:
            why = self.unavailable.get(site, "hypervisor not available")
            raise HypervisorError(f"site {site}: {why}") from None

    def site_name(self, site: str) -> str:
        """`site` if the cluster has it; VMOperationRefused naming the sites otherwise."""
        return self._site_name(site)

    def _site_name(self, site: str) -> str:
        names = [s.name for s in self.cluster.sites]
        if site not in names:
            raise UnknownName(f"no site {site!r} (sites: {', '.join(names)})")
        return site

    def states(self, domain: str) -> dict[str, VMState | str]:
        """Per site: the VM's state, or "unreachable: <why>"."""
        out: dict[str, VMState | str] = {}
        for site in self.cluster.sites:
            try:
                out[site.name] = self.hypervisor(site.name).state(domain)
            except (HypervisorError, OSError) as exc:
                out[site.name] = f"unreachable: {exc}"
        return out

    def table(self) -> list[dict[str, Any]]:
        """One row per VM (model VMs first, then domains found but not in the model)."""
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        for vm in self.cluster.vms:
            seen.add(vm.domain)
            rows.append(self._row(vm.name, vm.domain, vm.migratable, vm.memory_mib))
        extra: set[str] = set()
        for site in self.cluster.sites:
            try:
                extra.update(self.hypervisor(site.name).list())
            except (HypervisorError, OSError):
                continue
        for domain in sorted(extra - seen):
            rows.append(self._row("(not in config)", domain, None, None))
        return rows

    def _row(
        self, name: str, domain: str, migratable: bool | None, mib: int | None
    ) -> dict[str, Any]:
        states = self.states(domain)
        running = [s for s, st in states.items() if st in ACTIVE]
        row: dict[str, Any] = {"vm": name, "domain": domain}
        row.update({site: str(st) for site, st in states.items()})
        row["running_at"] = ", ".join(running) or None
        row["migratable"] = migratable
        row["memory_mib"] = mib
        return row

    def running_at(self, domain: str) -> str | None:
        running = [s for s, st in self.states(domain).items() if st in ACTIVE]
        if len(running) > 1:
            raise VMOperationRefused(
                f"{domain} is running at {' and '.join(running)} at once: resolve that first"
            )
        return running[0] if running else None

    # -- operations ---------------------------------------------------------------------

    def check_migrate(self, name: str, to: str) -> tuple[VM, str, str]:
        """What `migrate` checks before it moves anything (a dry run checks the same):
        the VM, its source site and the target site; VMOperationRefused if refused."""
        vm = self.vm(name)
        to = self._site_name(to)
        if not vm.migratable:
            raise VMOperationRefused(
                f"{vm.name} is not migratable (pinned to its site): stop it and use "
                f"`drorch vm failover-start {vm.name} --to {to}` instead"
            )
        source = self.running_at(vm.domain)
        if source is None:
            raise VMOperationRefused(f"{vm.name} ({vm.domain}) is not running at any site")
        if source == to:
            raise VMOperationRefused(f"{vm.name} already runs at site {to}")
        self.hypervisor(source)
        self.hypervisor(to)
        return vm, source, to

    def migrate_refusals(self, name: str, to: str) -> list[Refusal]:
        """The coded refusals of a live migration of NAME to `to` (its volumes there)."""
        return migrate_refusals(self.cluster, self.env, self.vm(name), self._site_name(to))

    def migrate(
        self,
        name: str,
        to: str,
        options: MigrationOptions,
        progress: ProgressCallback | None,
        *,
        force: bool = False,
    ) -> MigrationReport:
        """Live-migrate; VMOperationRefused (nothing moved) for what `check_migrate` and
        `migrate_refusals` refuse (`force`: except the forceable refusals)."""
        vm, source, to = self.check_migrate(name, to)
        blocking = [r for r in self.migrate_refusals(name, to) if not (r.forceable and force)]
        if blocking:
            raise VolumesNotOpen(blocking)
        src, dst = self.hypervisor(source), self.hypervisor(to)
        sim = self.cluster.hypervisor.driver == "sim"
        try:
            result = src.migrate_live(vm.domain, dst, options, progress)
        except MigrationFailed as failed:
            return MigrationReport(
                vm.name, vm.domain, source, to, False, failed.result, str(failed), sim
            )
        reason = result.reason
        try:
            self.sync_xml(vm.name, to)
        except (HypervisorError, OSError) as exc:  # migrated; only the copy is missing
            reason += f" (its XML could not be saved: {exc}; run `drorch vm sync-xml`)"
        return MigrationReport(vm.name, vm.domain, source, to, True, result, reason, sim)

    @property
    def xml_store(self) -> XMLStore:
        return XMLStore(self.env.state_dir, self.cluster, Path(self.env.base_dir))

    def sync_xml(self, name: str, site: str | None = None) -> list[SavedXML]:
        """Save VM NAME's definition at `site` (default: where it runs) for every site,
        mapped for each (disks, networks, URIs), in the state directory."""
        vm = self.vm(name)
        if site is None:
            site = self.running_at(vm.domain)
            if site is None:
                raise VMOperationRefused(
                    f"{vm.name} runs at no site: name the site whose definition to save (--site)"
                )
        site = self._site_name(site)
        xml = self.hypervisor(site).export_xml(vm.domain)
        return self.xml_store.save(vm, site, xml, self.env.clock.now())

    def saved_xml(self, name: str, to: str, xml_file: Path | None) -> tuple[str, str]:
        """The domain XML to cold-start from, and where it came from: --xml FILE, the copy
        saved for `to` in the state directory, the model's `xml` file (mapped for `to`),
        or the persistent definition at another reachable site (mapped for `to`)."""
        vm = self.vm(name)
        to = self._site_name(to)
        if xml_file is not None:
            return xml_file.read_text(encoding="utf-8"), str(xml_file)
        saved = self.xml_store.read(vm, to)
        if saved is not None:
            return saved[0], f"{saved[1].path} (saved from {saved[1].from_site})"
        base = Path(self.env.base_dir)
        if vm.xml:
            path = base / vm.xml
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                if to != self.cluster.primary_site:  # the config's XML is the primary's
                    text, _ = for_site(text, self.cluster, vm, self.cluster.primary_site, to, base)
                return text, str(path)
        for site in self.cluster.sites:
            if site.name == to:
                continue
            try:
                xml = self.hypervisor(site.name).export_xml(vm.domain)
            except (HypervisorError, OSError):
                continue
            return for_site(xml, self.cluster, vm, site.name, to, base)[0], f"site {site.name}"
        if self.cluster.hypervisor.driver == "sim":  # the simulator defines from the model
            from drorch.virt.sim import sim_domain_xml

            return sim_domain_xml(vm, self.cluster, to), "the model (simulated)"
        raise VMOperationRefused(
            f"no saved XML for {vm.name} at {to}: `drorch vm sync-xml {vm.name}` while it runs,"
            " pass --xml FILE, or set `xml:` for it in the config"
        )

    def failover_start(
        self, name: str, to: str, xml: str, *, force_unreachable: bool
    ) -> ColdStartResult:
        vm = self.vm(name)
        to = self._site_name(to)
        others = [s.name for s in self.cluster.sites if s.name != to]
        states = self.states(vm.domain)
        blind = [s for s in others if not isinstance(states[s], VMState)]
        if blind and not force_unreachable:
            raise VMOperationRefused(
                f"cannot confirm {vm.name} is stopped at {', '.join(blind)} (unreachable); "
                "if that site is surely down or fenced, repeat with --force (two running "
                "copies would corrupt the shared data)"
            )
        elsewhere = [self.hypervisor(s) for s in others if s not in blind]
        try:
            result = self.hypervisor(to).cold_start(xml, elsewhere)
        except VMRunningElsewhere as exc:
            raise VMOperationRefused(str(exc)) from None
        # what runs at `to` now is what a failback must define; if saving fails, the VM
        # still started and `status` says saved-xml-stale until `vm sync-xml`
        with suppress(HypervisorError, OSError):
            self.sync_xml(vm.name, to)
        return result

    def check_start(self, name: str, site: str) -> tuple[VM, str, VMState]:
        """What `start` checks (a dry run checks the same): the VM, the site, its state
        there. Refused while it runs at another site, at a site that cannot say, or while
        a volume of it is not primary at `site` (volume-not-primary)."""
        vm = self.vm(name)
        site = self._site_name(site)
        states = self.states(vm.domain)
        blind = [s for s, st in states.items() if s != site and not isinstance(st, VMState)]
        if blind:
            raise VMOperationRefused(
                f"cannot confirm {vm.name} is stopped at {', '.join(blind)} (unreachable): "
                f"use `drorch vm failover-start {vm.name} --to {site}` if that site is down"
            )
        where = self.running_at(vm.domain)
        if where is not None and where != site:
            raise VMOperationRefused(f"{vm.name} is running at site {where}: stop it there first")
        advice = f"promote it there first (`drorch repl promote`, or `drorch failover --to {site}`)"
        not_primary = [
            r
            for r in volume_refusals(
                self.cluster, self.env, vm, site, f"{vm.name} would boot from", advice
            )
            if not r.forceable  # a volume no one can ask is left to the operator here
        ]
        if not_primary:
            raise VMOperationRefused("; ".join(f"{r.code}: {r.message}" for r in not_primary))
        return vm, site, self._state_at(states, site)

    def check_site_state(self, name: str, site: str) -> tuple[VM, str, VMState]:
        """The VM, the site and its state there (for shutdown/destroy and their dry runs);
        refused when that site's hypervisor cannot be asked."""
        vm = self.vm(name)
        site = self._site_name(site)
        return vm, site, self._state_at(self.states(vm.domain), site)

    @staticmethod
    def _state_at(states: dict[str, VMState | str], site: str) -> VMState:
        state = states[site]
        if not isinstance(state, VMState):
            raise HypervisorError(f"site {site}: {state}")
        return state

    def start(self, name: str, site: str) -> None:
        vm, site, _ = self.check_start(name, site)
        self.hypervisor(site).start(vm.domain)

    def shutdown(self, name: str, site: str, timeout: float) -> ShutdownResult:
        vm = self.vm(name)
        return self.hypervisor(self._site_name(site)).shutdown(vm.domain, timeout)

    def destroy(self, name: str, site: str) -> None:
        vm = self.vm(name)
        self.hypervisor(self._site_name(site)).destroy(vm.domain)
