"""Failover: the source site is lost; bring everything up at the survivor.

Order: make sure the lost site has fenced itself (confirmed, or wait `takeover_wait`)
-> promote every volume at the survivor with a new quorum epoch (a replica that may be
behind is flagged: promoting it loses the writes it never received) -> define and start
every VM from its saved XML (dependencies first) -> start the services -> verify.
"""

from __future__ import annotations

from drorch.decide.snapshot import Snapshot, active_site, replica_node
from drorch.decide.startup import start_service_steps, start_vm_steps, verify_steps
from drorch.decide.steps import Action, Plan, Step, blocker, fmt_seconds, note
from drorch.model.reports import ReportItem
from drorch.model.states import UNUSABLE_DISKS, DiskState
from drorch.model.types import Cluster


def _fence_steps(snapshot: Snapshot, lost: str, witness_down: str | None) -> list[Step]:
    q = snapshot.cluster.quorum
    if snapshot.fenced.get(lost):
        why = snapshot.fenced_reason.get(lost, "confirmed")
        return [
            Step(
                Action.CONFIRM_FENCED,
                lost,
                f"{lost} is confirmed fenced ({why}): it can no longer write",
                site=lost,
                params={"confirmed": True, "how": why},
            )
        ]
    unconfirmed = f"{lost} is not confirmed fenced: check that its lease at the witness has expired"
    if witness_down is not None:
        unconfirmed = (
            f"{lost} is not confirmed fenced, and cannot be: the witness does not answer"
            f" ({witness_down}); DATA-LOSS RISK if {lost} still writes"
        )
    return [
        Step(
            Action.CONFIRM_FENCED,
            lost,
            unconfirmed,
            site=lost,
            data_loss=witness_down is not None,
            params={"confirmed": False},
        ),
        Step(
            Action.WAIT_TAKEOVER,
            lost,
            f"wait takeover_wait {fmt_seconds(q.takeover_wait)} (lease_timeout"
            f" {fmt_seconds(q.lease_timeout)} + switch_delay {fmt_seconds(q.switch_delay)})"
            f" so {lost}'s watchdog has surely fired before anything is promoted",
            site=lost,
            params={
                "seconds": q.takeover_wait,
                "lease_timeout": q.lease_timeout,
                "switch_delay": q.switch_delay,
            },
        ),
    ]


def outdated_reason(volume: str, site: str, writer: str, since: int) -> str:
    """The one wording of a witness outdate record (plans; `repl promote` says the same)."""
    return (
        f"{volume} at {site} is outdated since epoch {since}: {writer} wrote alone after the"
        " link failed"
    )


def promotion_epoch(snapshot: Snapshot, dst: str) -> tuple[int, str]:
    """The epoch a promotion at `dst` takes, and where it comes from: the witness's grant
    to `dst` when it holds it, else the grant it will get (witness epoch + 1), else (no
    witness view) the highest replica epoch + 1. A grant that is not above every replica
    epoch cannot fence anything (epochs are strict): then the floor, and the promotion's
    witness check refuses it until the witness's epoch moves past the replicas'."""
    view = snapshot.witness.get(dst)
    floor = snapshot.epoch + 1
    if view is not None and view.granted and view.epoch > snapshot.epoch:
        return view.epoch, f"the witness's grant to {dst}"
    if view is not None and view.granted:
        return floor, (
            f"the highest replica epoch + 1: the witness's grant to {dst} (epoch {view.epoch})"
            f" is not above the replicas' epoch {snapshot.epoch}"
        )
    if view is not None:
        return max(view.epoch + 1, floor), f"the witness's next grant ({dst} must hold it)"
    return floor, "the highest replica epoch + 1 (the witness was not asked)"


def rpo_notes(snapshot: Snapshot, lost: str, dst: str) -> list[str]:
    """What a failover to `dst` would lose, per volume, as far as can be known."""
    notes: list[str] = []
    asked = snapshot.witness_asked(dst)
    for vol in snapshot.cluster.volumes:
        since = snapshot.outdated_since(vol.name, dst)
        replica = snapshot.replica(vol.name, dst)
        if since is not None:
            notes.append(
                f"RPO {vol.name}: every write at {lost} since epoch {since} (the witness "
                f"records {vol.name} at {dst} as outdated)"
            )
        elif replica is None or replica.disk != DiskState.UP_TO_DATE:
            disk = replica.disk if replica else "unknown"
            notes.append(f"RPO {vol.name}: unknown, the replica at {dst} is {disk}")
        elif not asked:
            notes.append(
                f"RPO {vol.name}: 0 only if {dst}'s copy is current; the witness was not "
                f"asked as {dst} ({snapshot.witness_errors.get(dst, 'no witness client')})"
            )
        elif (replica.mode or vol.mode) == "sync":  # as it runs now, else the config's
            notes.append(f"RPO {vol.name}: 0 (sync, UpToDate, no outdate record at the witness)")
        else:
            notes.append(f"RPO {vol.name}: up to its lag ({replica.lag_bytes} B last seen; async)")
    return notes


def stale_record(snapshot: Snapshot, volume: str, site: str) -> bool:
    """The witness records `site`'s copy as outdated, yet it is connected to the other
    copy and in sync with it, both UpToDate (it resynced from it since): the record no
    longer says anything true, and promoting this copy loses nothing. Never so for a
    failover (the lost site's copy is not connected)."""
    here = snapshot.replica(volume, site)
    others = [r for (v, s), r in snapshot.replicas.items() if v == volume and s != site]
    return (
        here is not None
        and here.connection == "Connected"
        and here.in_sync
        and len(others) == 1
        and others[0].connection == "Connected"
        and others[0].in_sync
    )


def promote_steps(
    snapshot: Snapshot, lost: str, dst: str, blockers: list[ReportItem]
) -> list[Step]:
    c = snapshot.cluster
    epoch, _ = promotion_epoch(snapshot, dst)
    steps: list[Step] = []
    for vol in c.volumes:
        node = replica_node(c, vol, dst)
        replica = snapshot.replica(vol.name, dst)
        disk = replica.disk if replica else "unknown"
        base = f"promote {vol.name} at {dst} with quorum epoch {epoch}"
        params = {"epoch": epoch, "second_primary": False, "disk": disk}
        since = snapshot.outdated_since(vol.name, dst)
        if since is not None and stale_record(snapshot, vol.name, dst):
            since = None  # the promotion clears it (runbook.steps._promotion)
        if since is not None and disk not in UNUSABLE_DISKS:
            # forceable, and the step still needs the data-loss acknowledgement
            blockers.append(
                blocker(
                    "replica-outdated",
                    f"{outdated_reason(vol.name, dst, lost, since)}; promoting it loses "
                    f"every write {lost} made since",
                    forceable=True,
                )
            )
            steps.append(
                Step(
                    Action.PROMOTE,
                    vol.name,
                    f"{base}: DATA-LOSS RISK: {outdated_reason(vol.name, dst, lost, since)};"
                    " needs force with a data-loss acknowledgement",
                    site=dst,
                    node=node,
                    data_loss=True,
                    params=params,
                )
            )
            continue
        if disk in UNUSABLE_DISKS:
            blockers.append(
                blocker(
                    "replica-unusable",
                    f"{vol.name}: the replica at {dst} is {disk}; it holds no usable copy, so"
                    " nothing can start from it",
                )
            )
            steps.append(Step(Action.PROMOTE, vol.name, f"{base}: impossible, disk is {disk}",
                              site=dst, node=node, data_loss=True, params=params))  # fmt: skip
        elif disk != DiskState.UP_TO_DATE:
            steps.append(
                Step(
                    Action.PROMOTE,
                    vol.name,
                    f"{base}: DATA-LOSS RISK: its disk is {disk}, so writes made at {lost}"
                    " after replication stopped are lost; needs force with a data-loss"
                    " acknowledgement",
                    site=dst,
                    node=node,
                    data_loss=True,
                    params=params,
                )
            )
        else:
            lossless = (
                "so no acknowledged write is lost"
                if vol.mode == "sync"
                else f"but {vol.mode}: the writes {lost} acknowledged after its last shipment"
                " here are lost (how many is unknown until it returns)"
            )
            steps.append(
                Step(
                    Action.PROMOTE,
                    vol.name,
                    f"{base}: its disk is UpToDate, {lossless}",
                    site=dst,
                    node=node,
                    params=params,
                )
            )
    return steps


def plan_failover(snapshot: Snapshot, to_site: str) -> Plan:
    """The ordered steps to take over at `to_site` after the other site was lost."""
    c = snapshot.cluster
    names = [s.name for s in c.sites]
    if to_site not in names:
        unknown = blocker("unknown-site", f"{to_site!r} is not a site ({', '.join(names)})")
        return Plan("failover", "?", to_site, (), (unknown,))
    lost = c.other_site(to_site).name
    dst = to_site
    src, why_src = active_site(snapshot)
    epoch, epoch_source = promotion_epoch(snapshot, to_site)
    notes = [
        note("active-site", f"the cluster ran at {src}: {why_src}"),
        note("promotion-epoch", f"promotion epoch {epoch}: {epoch_source}"),
        *(note("rpo", n) for n in rpo_notes(snapshot, lost, to_site)),
        *(note("unobserved", u) for u in snapshot.unobserved),
    ]
    blockers: list[ReportItem] = []
    if snapshot.is_reachable(lost) and not snapshot.fenced.get(lost):
        # never forceable: the way past it is fencing `lost`, not overriding the check
        blockers.append(
            blocker(
                "source-not-fenced",
                f"{lost} is still reachable and not fenced: taking over now risks split"
                f" brain; use `plan migrate --to {dst}` while both sites are up",
            )
        )
    if not snapshot.is_reachable(dst):
        blockers.append(
            blocker("site-unreachable", f"site {dst} is unreachable: nothing can be started there")
        )
    witness_down = None if snapshot.fenced.get(lost) else snapshot.witness_errors.get(dst)
    if witness_down is not None:
        blockers.append(witness_blocker(lost, dst, witness_down, snapshot.cluster))
    steps = _fence_steps(snapshot, lost, witness_down)
    steps += promote_steps(snapshot, lost, dst, blockers)
    steps += start_vm_steps(
        snapshot, [vm.name for vm in c.vms], lost, dst, f"{{name}} was lost with {lost}"
    )
    steps += start_service_steps(snapshot, [s.name for s in c.services], dst)
    steps += verify_steps(c, dst)
    return Plan("failover", lost, dst, tuple(steps), tuple(blockers), tuple(notes))


def witness_blocker(lost: str, dst: str, why: str, cluster: Cluster) -> ReportItem:
    """A failover while the witness cannot be asked as `dst`: no grant (so no epoch that
    fences `lost`'s writes), no outdate records, nothing that confirms `lost` fenced.
    Forceable, for the operator who knows `lost` is powered off; the forced run needs the
    data-loss acknowledgement (its confirm-fenced step says why)."""
    back = (
        "bring it back (`drorch sim revive-witness`)"
        if cluster.hypervisor.driver == "sim" and "simulated" in why
        else f"check the witness ({cluster.witness.address if cluster.witness else '?'})"
        " and the network to it"
    )
    return blocker(
        "witness-unreachable",
        f"the witness cannot be asked as {dst} ({why}): {dst} would get no grant (no epoch"
        f" that fences {lost}), no outdate records, and nothing confirms {lost} fenced; "
        f"{back} and plan again; only if {lost} is surely powered off, run the failover"
        " with --force --accept-data-loss",
        forceable=True,
    )
