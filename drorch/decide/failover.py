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


def _fence_steps(snapshot: Snapshot, lost: str) -> list[Step]:
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
    return [
        Step(
            Action.CONFIRM_FENCED,
            lost,
            f"{lost} is not confirmed fenced: check that its lease at the witness has expired",
            site=lost,
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


def _promote_steps(
    snapshot: Snapshot, lost: str, dst: str, blockers: list[ReportItem]
) -> list[Step]:
    c = snapshot.cluster
    epoch = snapshot.epoch + 1
    steps: list[Step] = []
    for vol in c.volumes:
        node = replica_node(c, vol, dst)
        replica = snapshot.replica(vol.name, dst)
        disk = replica.disk if replica else "unknown"
        base = f"promote {vol.name} at {dst} with quorum epoch {epoch}"
        params = {"epoch": epoch, "second_primary": False, "disk": disk}
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
            steps.append(
                Step(
                    Action.PROMOTE,
                    vol.name,
                    f"{base}: its disk is UpToDate, so no acknowledged write is lost",
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
    notes = [
        note("active-site", f"the cluster ran at {src}: {why_src}"),
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
    steps = _fence_steps(snapshot, lost)
    steps += _promote_steps(snapshot, lost, dst, blockers)
    steps += start_vm_steps(
        snapshot, [vm.name for vm in c.vms], lost, dst, f"{{name}} was lost with {lost}"
    )
    steps += start_service_steps(snapshot, [s.name for s in c.services], dst)
    steps += verify_steps(c, dst)
    return Plan("failover", lost, dst, tuple(steps), tuple(blockers), tuple(notes))
