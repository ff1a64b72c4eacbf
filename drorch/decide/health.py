"""Is the cluster healthy? PURE: the invariants `drorch status` checks, over a Snapshot.

Each check returns coded reports (severity, code, message, what to do), the way
`pcs status` and `crm_mon` flag trouble. Nothing observed means nothing vouched for: an
unreachable site or a driver that could not be asked is an error, never "healthy".

    reports = check_health(snapshot)
    exit_code(reports)  # 0 healthy, 1 degraded (warnings), 2 broken (errors)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from drorch.decide.snapshot import Snapshot
from drorch.model.states import ACTIVE_VM_STATES, Role, VMState


class Health(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class HealthReport:
    severity: Health
    code: str
    message: str
    action: str

    def as_dict(self) -> dict[str, str]:
        return {
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "action": self.action,
        }


def _error(code: str, message: str, action: str) -> HealthReport:
    return HealthReport(Health.ERROR, code, message, action)


def _warn(code: str, message: str, action: str) -> HealthReport:
    return HealthReport(Health.WARNING, code, message, action)


def _active_sites(s: Snapshot, domain: str) -> list[str]:
    return [
        site.name for site in s.cluster.sites if s.vm_state(domain, site.name) in ACTIVE_VM_STATES
    ]


def _handing_over(s: Snapshot, volume: str) -> bool:
    """A live hand-over: a VM on the volume runs at one site and is paused (receiving
    the migration) at the other. Only then are two primaries expected."""
    for vm in s.cluster.vms:
        if volume in vm.volumes:
            states = {s.vm_state(vm.domain, site.name) for site in s.cluster.sites}
            if states == {VMState.RUNNING, VMState.PAUSED}:
                return True
    return False


def vm_at_two_sites(s: Snapshot) -> Iterator[HealthReport]:
    for vm in s.cluster.vms:
        sites = _active_sites(s, vm.domain)
        states = {s.vm_state(vm.domain, site) for site in sites}
        if len(sites) > 1 and states != {VMState.RUNNING, VMState.PAUSED}:  # not a live migration
            yield _error(
                "vm-at-two-sites",
                f"VM {vm.name} runs at {' and '.join(sites)}: two copies write to its disks",
                f"stop the copy at the site whose volumes are not primary"
                f" (`drorch vm destroy {vm.name} --site SITE`), then check the data",
            )


def vm_on_non_primary_volume(s: Snapshot) -> Iterator[HealthReport]:
    for vm in s.cluster.vms:
        for site in _active_sites(s, vm.domain):
            for vol in vm.volumes:
                r = s.replica(vol, site)
                if r is not None and r.role != Role.PRIMARY:
                    yield _error(
                        "vm-on-non-primary-volume",
                        f"VM {vm.name} runs at {site} but its volume {vol} is {r.role} there",
                        f"promote {vol} at {site} (`drorch repl promote`) or stop {vm.name}"
                        f" at {site}",
                    )


def two_primaries(s: Snapshot) -> Iterator[HealthReport]:
    for vol in s.cluster.volumes:
        sites = [
            site.name
            for site in s.cluster.sites
            if (r := s.replica(vol.name, site.name)) and r.role == Role.PRIMARY
        ]
        if len(sites) > 1 and not _handing_over(s, vol.name):
            yield _error(
                "two-primaries",
                f"volume {vol.name} is primary at both {' and '.join(sites)} outside a live"
                " hand-over: a split brain in the making",
                f"demote {vol.name} at the site that must not write (`drorch repl demote`)",
            )


def volume_away_from_vm(s: Snapshot) -> Iterator[HealthReport]:
    for vm in s.cluster.vms:
        running = _active_sites(s, vm.domain)
        if len(running) != 1:
            continue
        for vol in vm.volumes:
            prim = [
                site.name
                for site in s.cluster.sites
                if (r := s.replica(vol, site.name)) and r.role == Role.PRIMARY
            ]
            if prim and running[0] not in prim:
                yield _error(
                    "volume-away-from-vm",
                    f"volume {vol} is primary at {prim[0]} while its VM {vm.name} runs at"
                    f" {running[0]}",
                    f"move the volume with the VM (`drorch migrate --to {running[0]}`) or"
                    f" stop {vm.name}",
                )


def vm_down(s: Snapshot) -> Iterator[HealthReport]:
    """A VM that runs nowhere, or crashed, is an outage (only judged when every site
    could be asked: an unreachable site is reported on its own)."""
    if not all(s.is_reachable(site.name) for site in s.cluster.sites):
        return
    for vm in s.cluster.vms:
        states = {site.name: s.vm_state(vm.domain, site.name) for site in s.cluster.sites}
        crashed = [site for site, st in states.items() if st == "crashed"]
        if crashed:
            yield _error(
                "vm-crashed",
                f"VM {vm.name} crashed at {', '.join(crashed)}",
                f"look at its console log, then restart it (`drorch vm start {vm.name}"
                f" --site {crashed[0]}`)",
            )
        elif not any(st in ACTIVE_VM_STATES for st in states.values()):
            yield _error(
                "vm-stopped",
                f"VM {vm.name} runs at no site: its service is down",
                f"start it where its volumes are primary (`drorch vm start {vm.name} --site SITE`)",
            )


def unreachable_sites(s: Snapshot) -> Iterator[HealthReport]:
    for site in s.cluster.sites:
        if not s.is_reachable(site.name):
            yield _error(
                "site-unreachable",
                f"site {site.name} is unreachable: none of its drivers answered",
                f"check the network and the nodes of site {site.name}; nothing there is"
                " known to be running or stopped",
            )


def replication_health(s: Snapshot) -> Iterator[HealthReport]:
    for vol in s.cluster.volumes:
        for site in s.cluster.sites:
            r = s.replica(vol.name, site.name)
            if r is None:
                continue
            if r.connection not in ("Connected", "SyncSource", "SyncTarget"):
                alone = (
                    f"; {r.unshipped_writes} write(s) since {r.unshipped_first} are only"
                    " here (lost if this site is lost now)"
                    if r.unshipped_writes
                    else ""
                )
                yield _warn(
                    "replication-not-connected",
                    f"volume {vol.name} at {site.name} is {r.connection} (disk {r.disk}):"
                    f" writes are not replicated{alone}",
                    f"reconnect it (`drorch repl connect`); if it says split brain, resolve it"
                    f" (`drorch repl resolve --volume {vol.name}`)",
                )
            elif r.out_of_sync_bytes or r.lag_bytes or r.disk != "UpToDate":
                yield _warn(
                    "replication-behind",
                    f"volume {vol.name} at {site.name} is {r.disk} with"
                    f" {r.out_of_sync_bytes} bytes out of sync and {r.lag_bytes} bytes of lag",
                    "wait for the resync before any planned switch",
                )


DISCARD_REPORTED_FOR = 24 * 3600.0  # seconds a discard stays a warning in status


def writes_discarded(s: Snapshot) -> Iterator[HealthReport]:
    """A replica resynced from its peer after a failover discarded the writes only it had
    (pyrepl's unshipped ledger): the failover's real RPO, reported for a day."""
    for (volume, site), r in sorted(s.replicas.items()):
        low = r.discarded_uncounted
        if not (r.discarded_writes or low) or r.discarded_at is None:
            continue
        if s.now and s.now - r.discarded_at > DISCARD_REPORTED_FOR:
            continue
        count = f"at least {r.discarded_writes}" if low else str(r.discarded_writes)
        yield _warn(
            "writes-discarded",
            f"volume {volume} at {site} discarded {count} write(s) it had"
            f" acknowledged ({r.discarded_window}) when it was resynced from its peer:"
            " the failover lost them" + (f" (the count may be low: {low})" if low else ""),
            "check the applications on this volume for that window (e.g. replay from"
            " their own logs); the warning clears a day after the discard",
        )


def witness_health(s: Snapshot) -> Iterator[HealthReport]:
    """The tiebreaker: can it be asked, does it agree with the timings, which copies does
    it record as outdated."""
    lease_ms = round(s.cluster.quorum.lease_timeout * 1000)
    for site, why in sorted(s.witness_errors.items()):
        yield _warn(
            "witness-unreachable",
            f"the witness cannot be asked as site {site}: {why}",
            "until it answers, an exactly-half partition has no tiebreaker and nothing"
            " promotes automatically; check the witness and the network to it",
        )
    seen: set[int] = set()
    for site, view in sorted(s.witness.items()):
        if view.lease_ms != lease_ms and view.lease_ms not in seen:
            seen.add(view.lease_ms)
            yield _error(
                "witness-timings",
                f"the witness grants {view.lease_ms} ms leases but quorum.lease_timeout is"
                f" {s.cluster.quorum.lease_timeout:g}s (asked as site {site})",
                "make them equal: takeover_wait and the watchdog are derived from"
                " lease_timeout, so a different lease at the witness breaks the fencing chain",
            )
    yield from _lease_holder(s)
    for (volume, site), epoch in sorted(s.outdated.items()):
        yield _warn(
            "replica-outdated",
            f"the witness records {volume} at {site} as outdated since epoch {epoch}: it is"
            " not guaranteed current, and promoting it would lose writes",
            f"reconnect it and let it resync (`drorch repl connect`); until then {site} can"
            " take over only with --force --accept-data-loss",
        )


def _lease_holder(s: Snapshot) -> Iterator[HealthReport]:
    """Who holds the witness's lease, against where the volumes are primary: nobody
    (nothing keeps the active site's claim: the agents are not running, or cannot reach
    the witness) is a warning; the other site is an error (it may take over)."""
    if not s.witness:
        return
    primary_at = {r.site for r in s.replicas.values() if r.role == Role.PRIMARY}
    if len(primary_at) != 1:
        return  # none, or two-primaries / volume placement reports already say why
    active = next(iter(primary_at))
    holders = {v.holder for v in s.witness.values()}
    if holders == {None}:
        yield _warn(
            "quorum-unheld",
            f"no site holds the witness's lease while the volumes are primary at {active}:"
            " nothing keeps its claim, so no failover can be arbitrated",
            f"start the site agents (`drorch agent run`) so {active}'s agent holds the lease",
        )
    elif active not in holders:
        other = ", ".join(sorted(h for h in holders if h))
        yield _error(
            "quorum-elsewhere",
            f"the witness's lease is held by {other} while the volumes are primary at"
            f" {active}: {other} may take over while {active} still writes",
            f"find out why {active} lost the lease (agent, network to the witness); do not"
            f" promote at {other} until {active} is fenced",
        )


def saved_xml_health(s: Snapshot) -> Iterator[HealthReport]:
    """Can every VM be defined at the other site: is its XML saved there (or in the
    config), and is the saved copy as new as the definition that runs?"""
    if not s.saved_xml_observed:
        return
    for vm in s.cluster.vms:
        views = [s.saved_xml_for(vm.name, site.name) for site in s.cluster.sites]
        stale = next((v for v in views if v is not None and v.stale), None)
        if stale is not None:
            yield _warn(
                "saved-xml-stale",
                f"the domain XML saved for {vm.name} (from {stale.from_site}) is older than"
                f" the definition running now: {stale.stale}",
                f"save it again (`drorch vm sync-xml {vm.name}`) so a failover defines"
                " what runs today",
            )
        running = _active_sites(s, vm.domain)
        missing = [
            site.name
            for site, view in zip(s.cluster.sites, views, strict=True)
            if view is None and site.name not in running
        ]
        # the simulator makes a VM's definition from the model wherever it is needed
        if missing and not vm.xml and s.cluster.hypervisor.driver != "sim":
            yield _warn(
                "saved-xml-missing",
                f"no domain XML of {vm.name} is saved for {', '.join(missing)} and the config"
                " has no `xml:` for it: a failover there could not define it",
                f"save it (`drorch vm sync-xml {vm.name}`), or set `xml:` in the config",
            )


def unobserved(s: Snapshot) -> Iterator[HealthReport]:
    for what in s.unobserved:
        yield _error(
            "unobserved",
            f"could not be observed: {what}",
            "fix the driver or its connection; until then status cannot vouch for it",
        )


CHECKS: tuple[Callable[[Snapshot], Iterator[HealthReport]], ...] = (
    unreachable_sites,
    unobserved,
    vm_at_two_sites,
    two_primaries,
    vm_on_non_primary_volume,
    volume_away_from_vm,
    vm_down,
    replication_health,
    writes_discarded,
    witness_health,
    saved_xml_health,
)


def check_health(s: Snapshot) -> tuple[HealthReport, ...]:
    return tuple(r for check in CHECKS for r in check(s))


def exit_code(reports: tuple[HealthReport, ...]) -> int:
    if any(r.severity is Health.ERROR for r in reports):
        return 2
    return 1 if reports else 0
