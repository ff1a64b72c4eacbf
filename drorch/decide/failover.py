"""Failover: the source site is lost; bring everything up at the survivor.

Order: make sure the lost site has fenced itself (confirmed, or wait `takeover_wait`)
-> promote every volume at the survivor with a new quorum epoch (a replica that may be
behind is flagged: promoting it loses the writes it never received) -> define and start
every VM from its saved XML (dependencies first) -> start the services -> verify.
"""

from __future__ import annotations

from drorch.decide.snapshot import UP_TO_DATE, Snapshot, active_site, replica_node
from drorch.decide.startup import start_service_steps, start_vm_steps, verify_steps
from drorch.decide.steps import Action, Plan, Step, fmt_seconds

# Replicas whose data cannot be booted at all (partial resync, no disk).
UNUSABLE_DISKS = ("Inconsistent", "Diskless")


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
            )
        ]
    return [
        Step(
            Action.CONFIRM_FENCED,
            lost,
            f"{lost} is not confirmed fenced: check that its lease at the witness has expired",
            site=lost,
        ),
        Step(
            Action.WAIT_TAKEOVER,
            lost,
            f"wait takeover_wait {fmt_seconds(q.takeover_wait)} (lease_timeout"
            f" {fmt_seconds(q.lease_timeout)} + switch_delay {fmt_seconds(q.switch_delay)})"
            f" so {lost}'s watchdog has surely fired before anything is promoted",
            site=lost,
        ),
    ]


def _promote_steps(snapshot: Snapshot, lost: str, dst: str, blockers: list[str]) -> list[Step]:
    c = snapshot.cluster
    epoch = snapshot.epoch + 1
    steps: list[Step] = []
    for vol in c.volumes:
        node = replica_node(c, vol, dst)
        replica = snapshot.replica(vol.name, dst)
        disk = replica.disk if replica else "unknown"
        base = f"promote {vol.name} at {dst} with quorum epoch {epoch}"
        if disk in UNUSABLE_DISKS:
            blockers.append(
                f"{vol.name}: the replica at {dst} is {disk}; it holds no usable copy, so"
                " nothing can start from it"
            )
            steps.append(Step(Action.PROMOTE, vol.name, f"{base}: impossible, disk is {disk}",
                              site=dst, node=node, data_loss=True))  # fmt: skip
        elif disk != UP_TO_DATE:
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
                )
            )
    return steps


def plan_failover(snapshot: Snapshot, to_site: str) -> Plan:
    """The ordered steps to take over at `to_site` after the other site was lost."""
    c = snapshot.cluster
    names = [s.name for s in c.sites]
    if to_site not in names:
        return Plan(
            "failover", "?", to_site, (), (f"{to_site!r} is not a site ({', '.join(names)})",)
        )
    lost = c.other_site(to_site).name
    dst = to_site
    src, why_src = active_site(snapshot)
    notes = [f"the cluster ran at {src}: {why_src}", *snapshot.unobserved]
    blockers: list[str] = []
    if snapshot.is_reachable(lost) and not snapshot.fenced.get(lost):
        blockers.append(
            f"{lost} is still reachable and not fenced: taking over now risks split brain;"
            f" use `plan migrate --to {dst}` while both sites are up"
        )
    if not snapshot.is_reachable(dst):
        blockers.append(f"site {dst} is unreachable: nothing can be started there")
    steps = _fence_steps(snapshot, lost)
    steps += _promote_steps(snapshot, lost, dst, blockers)
    steps += start_vm_steps(
        snapshot, [vm.name for vm in c.vms], lost, dst, f"{{name}} was lost with {lost}"
    )
    steps += start_service_steps(snapshot, [s.name for s in c.services], dst)
    steps += verify_steps(c, dst)
    return Plan("failover", lost, dst, tuple(steps), tuple(blockers), tuple(notes))
