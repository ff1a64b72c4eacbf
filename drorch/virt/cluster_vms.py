"""The cluster's VMs across both sites: where each runs, and the operations an operator
runs on them (live migration, cold failover start, start/stop) with the cross-site
safety checks a single hypervisor cannot make. Used by `drorch vm` and runbook steps.

Sites whose hypervisor cannot be opened or asked are "unreachable": listed as such,
never guessed to be stopped, except where the operator forces it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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

ACTIVE = (VMState.RUNNING, VMState.PAUSED)


class VMOperationRefused(HypervisorError):
    """The operation is unsafe or impossible as asked; nothing was changed."""


def migration_options(policy: MigrationPolicy, **overrides: Any) -> MigrationOptions:
    """The cluster's migration policy as MigrationOptions; `None` overrides are ignored."""
    options = MigrationOptions(
        max_downtime=policy.max_downtime,
        downtime_ceiling=policy.downtime_ceiling,
        downtime_steps=policy.downtime_steps,
        stall_iterations=policy.stall_iterations,
        auto_converge=policy.auto_converge,
        allow_postcopy=policy.allow_postcopy,
        bandwidth_mibps=policy.bandwidth_mibps,
        deadline=policy.deadline,
    )
    return replace(options, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class MigrationReport:
    vm: str
    domain: str
    source: str
    dest: str
    ok: bool
    result: MigrationResult | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {
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
        raise VMOperationRefused(f"no VM {name!r} in cluster {self.cluster.name} ({known})")

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
            raise VMOperationRefused(f"no site {site!r} (sites: {', '.join(names)})")
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

    def migrate(
        self, name: str, to: str, options: MigrationOptions, progress: ProgressCallback | None
    ) -> MigrationReport:
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
        src, dst = self.hypervisor(source), self.hypervisor(to)
        try:
            result = src.migrate_live(vm.domain, dst, options, progress)
        except MigrationFailed as failed:
            return MigrationReport(
                vm.name, vm.domain, source, to, False, failed.result, str(failed)
            )
        return MigrationReport(vm.name, vm.domain, source, to, True, result, result.reason)

    def saved_xml(self, name: str, to: str, xml_file: Path | None) -> tuple[str, str]:
        """The domain XML to cold-start from, and where it came from: --xml FILE, the
        model's `xml` file, or the persistent definition at another reachable site."""
        vm = self.vm(name)
        if xml_file is not None:
            return xml_file.read_text(encoding="utf-8"), str(xml_file)
        if vm.xml:
            path = Path(self.env.base_dir) / vm.xml
            if path.is_file():
                return path.read_text(encoding="utf-8"), str(path)
        for site in self.cluster.sites:
            if site.name == to:
                continue
            try:
                return self.hypervisor(site.name).export_xml(vm.domain), f"site {site.name}"
            except (HypervisorError, OSError):
                continue
        raise VMOperationRefused(
            f"no saved XML for {vm.name}: pass --xml FILE or set `xml:` for it in the config"
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
            return self.hypervisor(to).cold_start(xml, elsewhere)
        except VMRunningElsewhere as exc:
            raise VMOperationRefused(str(exc)) from None

    def start(self, name: str, site: str) -> None:
        vm = self.vm(name)
        site = self._site_name(site)
        where = self.running_at(vm.domain)
        if where is not None and where != site:
            raise VMOperationRefused(f"{vm.name} is running at site {where}: stop it there first")
        self.hypervisor(site).start(vm.domain)

    def shutdown(self, name: str, site: str, timeout: float) -> ShutdownResult:
        vm = self.vm(name)
        return self.hypervisor(self._site_name(site)).shutdown(vm.domain, timeout)

    def destroy(self, name: str, site: str) -> None:
        vm = self.vm(name)
        self.hypervisor(self._site_name(site)).destroy(vm.domain)
