"""The planned migration (hurricane warning): move everything to the other site with the
least downtime, while both sites are healthy.

Order: stop what cannot move live (dependents first) -> wait until every volume is in
sync -> switch the volumes of what was stopped (demote at the source, promote at the target
with a new quorum epoch) -> for each live-migrated VM: allow two primaries on its volumes,
open them at the target, live-migrate, demote at the source, forbid two primaries again (the
DRBD way: during the hand-over both QEMUs have the disk open) -> start the others at the
target (dependencies first) -> start the services -> verify every monitor.

A migratable VM whose volume replicates asynchronously is moved cold instead: a live
hand-over needs both copies identical at every write, which only sync (protocol C) gives.
"""

from __future__ import annotations

from drorch.decide.failover import promotion_epoch
from drorch.decide.order import dependents_map, resources, stop_order
from drorch.decide.snapshot import Snapshot, active_site, replica_node
from drorch.decide.startup import (
    service_node,
    start_service_steps,
    start_vm_steps,
    verify_steps,
)
from drorch.decide.steps import Action, Plan, Step, blocker, fmt_bytes, fmt_seconds, note
from drorch.model.reports import ReportItem
from drorch.model.states import UNUSABLE_DISKS, ConnState, VMState
from drorch.model.types import VM, Cluster, ReplicationMode, Service, Volume


def _stop_reason(
    res: VM | Service,
    waiting: list[str],
    src: str,
    why_cold: dict[str, tuple[str, ...]],
) -> str:
    slow = why_cold.get(res.name)
    why = (
        f"{_uses_async(res.name, slow)}; a live hand-over needs sync replication, so it moves cold"
        if slow
        else f"{res.name} is not migratable"
    )
    reason = f"{why}: stop it at {src} before the volumes switch"
    if waiting:
        verb = "depends" if len(waiting) == 1 else "depend"
        reason += f" (after {', '.join(waiting)}, which {verb} on it)"
    return reason


def _uses_async(name: str, slow: tuple[str, ...]) -> str:
    return f"{name} uses {', '.join(slow)}, replicated asynchronously"


def _mode(snapshot: Snapshot, vol: Volume, src: str) -> str:
    """How `vol` replicates now: as its replica at the source runs (a volume configured
    async and switched to sync live, as the hurricane runbook does, is sync), else as
    the model says. A source still draining to sync reports async (pyrepl)."""
    here = snapshot.replica(vol.name, src)
    if here is not None and here.mode in ("sync", "async"):
        return here.mode
    return "sync" if vol.mode is ReplicationMode.SYNC else "async"


def _async_blocked(snapshot: Snapshot, src: str) -> dict[str, tuple[str, ...]]:
    """Migratable VMs that must move cold because a volume of theirs replicates async
    now, with those volumes."""
    c = snapshot.cluster
    out: dict[str, tuple[str, ...]] = {}
    for vm in c.vms:
        if not vm.migratable:
            continue
        slow = tuple(v for v in vm.volumes if _mode(snapshot, c.volume(v), src) == "async")
        if slow:
            out[vm.name] = slow
    return out


def _stop_steps(
    c: Cluster, snapshot: Snapshot, src: str, why_cold: dict[str, tuple[str, ...]]
) -> tuple[list[Step], set[str]]:
    cold = {r.name for r in resources(c) if not r.migratable} | set(why_cold)
    users = dependents_map(c)
    steps: list[Step] = []
    for res in stop_order(c, cold):
        waiting = [d for d in users.get(res.name, []) if d in cold]
        reason = _stop_reason(res, waiting, src, why_cold)
        if isinstance(res, VM):
            if snapshot.vm_state(res.domain, src) != VMState.RUNNING:
                continue
            steps.append(
                Step(
                    Action.SHUTDOWN_VM,
                    res.name,
                    reason,
                    site=src,
                    params={"domain": res.domain, "before": tuple(waiting)},
                )
            )
        else:
            node = service_node(c, res, src)
            steps.append(
                Step(
                    Action.STOP_SERVICE,
                    res.name,
                    reason,
                    site=src,
                    node=node,
                    params={"before": tuple(waiting)},
                )
            )
    return steps, cold


def _volume_steps(
    snapshot: Snapshot,
    src: str,
    dst: str,
    blockers: list[ReportItem],
    live_volumes: set[str],
) -> tuple[list[Step], list[Step]]:
    c = snapshot.cluster
    waits: list[Step] = []
    switches: list[Step] = []
    epoch, _ = promotion_epoch(snapshot, dst)
    for vol in c.volumes:
        src_node, dst_node = replica_node(c, vol, src), replica_node(c, vol, dst)
        here, there = snapshot.replica(vol.name, src), snapshot.replica(vol.name, dst)
        if there is None or here is None:
            blockers.append(
                blocker(
                    "replica-unobserved",
                    f"{vol.name}: replication state at {src if here is None else dst} is"
                    " unknown; a planned migration needs both replicas observed",
                    forceable=True,  # its wait-in-sync step still checks at run time
                )
            )
        elif there.disk in UNUSABLE_DISKS or here.connection == ConnState.STANDALONE:
            blockers.append(
                blocker(
                    "replica-cannot-catch-up",
                    f"{vol.name}: the replica at {dst} is {there.disk} and the link is"
                    f" {here.connection}; it cannot catch up, so a planned migration would"
                    " lose data (reconnect it first, or use `plan failover` if the source is"
                    " lost)",
                )
            )
        behind = "" if here is None else _behind(here.out_of_sync_bytes, here.lag_bytes)
        lag = 0 if here is None else max(here.out_of_sync_bytes, here.lag_bytes)
        mode = _mode(snapshot, vol, src)
        waits.append(
            Step(
                Action.WAIT_IN_SYNC,
                vol.name,
                f"{vol.name} ({mode}) must be UpToDate at {dst} before it switches{behind}",
                site=dst,
                node=dst_node,
                params={"mode": mode, "source_site": src, "behind_bytes": lag},
            )
        )
        if vol.name in live_volumes:
            continue  # switched during its VM's live hand-over (_live_steps)
        switches.append(
            Step(
                Action.DEMOTE,
                vol.name,
                f"switch {vol.name}: demote it at {src} so only one site can write",
                site=src,
                node=src_node,
            )
        )
        switches.append(
            Step(
                Action.PROMOTE,
                vol.name,
                f"switch {vol.name}: promote it at {dst} with quorum epoch {epoch}; the new"
                f" epoch fences any late write from {src}",
                site=dst,
                node=dst_node,
                params={
                    "epoch": epoch,
                    "second_primary": False,
                    "disk": there.disk if there else "unknown",
                },
            )
        )
    return waits, switches


def _behind(out_of_sync: int, lag: int) -> str:
    if out_of_sync or lag:
        return f" (now {fmt_bytes(max(out_of_sync, lag))} behind)"
    return " (in sync now)"


def _live_vms(snapshot: Snapshot, src: str, why_cold: dict[str, tuple[str, ...]]) -> list[VM]:
    return [
        vm
        for vm in snapshot.cluster.vms
        if vm.migratable
        and vm.name not in why_cold
        and snapshot.vm_state(vm.domain, src) == VMState.RUNNING
    ]


def _live_steps(snapshot: Snapshot, src: str, dst: str, live: list[VM]) -> list[Step]:
    c = snapshot.cluster
    steps: list[Step] = []
    budget = fmt_seconds(c.migration.max_downtime)
    epoch, _ = promotion_epoch(snapshot, dst)
    opened: set[str] = set()
    for vm in live:
        vols = [v for v in vm.volumes if v not in opened]
        opened.update(vols)
        for v in vols:
            vol = c.volume(v)
            pair = tuple(n for n in (replica_node(c, vol, src), replica_node(c, vol, dst)) if n)
            there = snapshot.replica(v, dst)
            steps.append(
                Step(
                    Action.ALLOW_TWO_PRIMARIES,
                    v,
                    f"{vm.name}'s live hand-over needs {v} open at both sites for a moment;"
                    " sync replication keeps the two copies identical",
                    params={"vm": vm.name, "nodes": pair},
                )
            )
            steps.append(
                Step(
                    Action.PROMOTE,
                    v,
                    f"open {v} at {dst} as second primary, so {vm.name}'s disk is writable"
                    " there when it resumes",
                    site=dst,
                    node=replica_node(c, vol, dst),
                    params={
                        "epoch": epoch,
                        "second_primary": True,
                        "disk": there.disk if there else "unknown",
                    },
                )
            )
        disks = (
            f"; its disks ({', '.join(vm.volumes)}) are open at both sites" if vm.volumes else ""
        )
        steps.append(
            Step(
                Action.MIGRATE_LIVE,
                vm.name,
                f"{vm.name} is migratable: live-migrate it to {dst} (pause budget {budget}){disks}",
                site=dst,
                params={
                    "domain": vm.domain,
                    "from_site": src,
                    "max_downtime": c.migration.max_downtime,
                    "volumes": tuple(vm.volumes),
                },
            )
        )
        for v in vols:
            vol = c.volume(v)
            pair = tuple(n for n in (replica_node(c, vol, src), replica_node(c, vol, dst)) if n)
            steps.append(
                Step(
                    Action.DEMOTE,
                    v,
                    f"{vm.name} runs at {dst} now: demote {v} at {src}",
                    site=src,
                    node=replica_node(c, vol, src),
                )
            )
            steps.append(
                Step(
                    Action.FORBID_TWO_PRIMARIES,
                    v,
                    f"only {dst} may write {v} again: forbid two primaries, so a late"
                    f" promotion at {src} is refused",
                    params={"vm": vm.name, "nodes": pair, "primary_site": dst},
                )
            )
    for svc in c.services:
        if svc.migratable:
            steps.append(
                Step(
                    Action.RELOCATE_SERVICE,
                    svc.name,
                    f"{svc.name} is migratable: move it from {service_node(c, svc, src)} to"
                    f" {service_node(c, svc, dst)} without stopping what depends on it",
                    site=dst,
                    node=service_node(c, svc, dst),
                    params={"from_site": src, "from_node": service_node(c, svc, src)},
                )
            )
    return steps


def plan_migration(snapshot: Snapshot, to_site: str) -> Plan:
    """The ordered steps of a planned migration to `to_site`, or blockers saying why not."""
    c = snapshot.cluster
    names = [s.name for s in c.sites]
    if to_site not in names:
        unknown = blocker("unknown-site", f"{to_site!r} is not a site ({', '.join(names)})")
        return Plan("migration", "?", to_site, (), (unknown,))
    src, why_src = active_site(snapshot)
    dst = to_site
    notes = [
        note("active-site", f"the cluster runs at {src}: {why_src}"),
        *(note("unobserved", u) for u in snapshot.unobserved),
    ]
    if src == dst:
        there = blocker("already-at-target", f"nothing to do: the cluster already runs at {dst}")
        return Plan("migration", src, dst, (), (there,), tuple(notes))
    blockers: list[ReportItem] = []
    for site in (src, dst):
        if not snapshot.is_reachable(site):
            blockers.append(
                blocker(
                    "site-unreachable",
                    f"site {site} is unreachable: a planned migration needs both sites"
                    + (" (use `plan failover` for a lost source)" if site == src else ""),
                )
            )
    if snapshot.witness_errors and not snapshot.witness:
        # nobody could ask it (as one site only is normal on a node: its own cert)
        site, why = sorted(snapshot.witness_errors.items())[0]
        blockers.append(
            blocker(
                "witness-unreachable",
                f"the witness cannot be asked ({why}): the quorum hand-over to {dst} and the"
                " promotion epoch come from it, so the run would stop at its quorum check;"
                " bring it back and plan again (or --force --accept-data-loss, knowing only"
                f" {src} writes)",
                forceable=True,
            )
        )
    why_cold = _async_blocked(snapshot, src)
    stops, cold = _stop_steps(c, snapshot, src, why_cold)
    live = _live_vms(snapshot, src, why_cold)
    live_volumes = {v for vm in live for v in vm.volumes}
    waits, switches = _volume_steps(snapshot, src, dst, blockers, live_volumes)
    lives = _live_steps(snapshot, src, dst, live)
    # a VM deliberately shut off at the source stays off; one not observed there is moved
    cold_vms = []
    for vm in c.vms:
        if vm.name not in cold or snapshot.vm_state(vm.domain, dst) == VMState.RUNNING:
            continue  # live-migrated, or already running at the target
        if (vm.domain, src) in snapshot.vm_states and snapshot.vm_state(
            vm.domain, src
        ) != VMState.RUNNING:
            notes.append(
                note("vm-left-stopped", f"{vm.name} is not running at {src}: it is left stopped")
            )
        else:
            cold_vms.append(vm.name)
    moved_cold = {n: _uses_async(n, slow) + " (moved cold)" for n, slow in why_cold.items()}
    starts = start_vm_steps(snapshot, cold_vms, src, dst, "{name} is not migratable", moved_cold)
    services = start_service_steps(snapshot, [s.name for s in c.services if not s.migratable], dst)
    steps = [*stops, *waits, *switches, *lives, *starts, *services, *verify_steps(c, dst)]
    return Plan("migration", src, dst, tuple(steps), tuple(blockers), tuple(notes))
