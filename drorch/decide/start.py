"""Start a cluster that runs nowhere (PURE): the plan, and when an agent starts it.

How a cluster comes to run nowhere with both sites up: the active site fenced itself
(cut off from its peer and the witness, or its agent froze and its watchdog fired) and
the partition healed before the other site could take over, or a lost site came back
before `takeover_wait` ran out. Both replicas are then secondary, UpToDate and
connected, no guest runs, and a takeover never starts, because no site is lost.
Pacemaker starts a resource whose target role is Started once the cluster has quorum
again; drorch's agent does the same, under the witness:

- only with `agent.failover: automatic`, outside maintenance mode, with quorum, the peer
  seen, the witness answering with no other site holding the lease, no run holding the
  cluster, and every local replica secondary, UpToDate and connected to a secondary,
  UpToDate peer (so neither copy is newer), and nothing running here;
- after the cluster has looked like that for `takeover_wait` at the configured primary
  site, and for twice that at the other (it starts only if the primary site did not);
- what it runs is `runbooks/cluster-start.yaml`: take the witness's lease (only one site
  gets it), then the `start` plan below, observed afresh.

To keep a cluster stopped on purpose, put it in maintenance mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from drorch.decide.agent import Takeover, TakeoverAction
from drorch.decide.failover import promote_steps, promotion_epoch, witness_blocker
from drorch.decide.rejoin import ReplicaView
from drorch.decide.snapshot import Snapshot
from drorch.decide.startup import start_service_steps, start_vm_steps, verify_steps
from drorch.decide.steps import Plan, Step, blocker, note
from drorch.model.reports import ReportItem
from drorch.model.states import ACTIVE_VM_STATES, ConnState, DiskState, Role
from drorch.model.types import FailoverMode

START = "start"


def plan_start(snapshot: Snapshot, to_site: str) -> Plan:
    """Promote every volume at `to_site` at the witness's epoch and start everything there,
    when nothing runs anywhere. Blocked while anything is primary or runs, while the other
    site cannot be seen to run nothing, or while the other site's copy may be newer."""
    c = snapshot.cluster
    names = [s.name for s in c.sites]
    if to_site not in names:
        unknown = blocker("unknown-site", f"{to_site!r} is not a site ({', '.join(names)})")
        return Plan(START, "?", to_site, (), (unknown,))
    other = c.other_site(to_site).name
    blockers: list[ReportItem] = []
    for site in names:
        if not snapshot.is_reachable(site):
            blockers.append(
                blocker(
                    "site-unreachable",
                    f"site {site} is unreachable: it cannot be seen to run nothing; if it was"
                    f" lost, that is a failover (`plan failover --to {to_site}`)"
                    if site == other
                    else f"site {site} is unreachable: nothing can be started there",
                )
            )
    for (name, site), r in sorted(snapshot.replicas.items()):
        if r.role == Role.PRIMARY:
            blockers.append(
                blocker(
                    "volume-primary",
                    f"{name} is primary at {site}: the cluster runs there; move it with"
                    f" `plan migrate --to {to_site}`",
                )
            )
    for (domain, site), state in sorted(snapshot.vm_states.items()):
        if state in ACTIVE_VM_STATES:
            blockers.append(blocker("vm-running", f"{domain} is {state} at {site}"))
    for vol in c.volumes:
        here, there = snapshot.replica(vol.name, to_site), snapshot.replica(vol.name, other)
        if here is None or there is None:
            missing = to_site if here is None else other
            blockers.append(
                blocker(
                    "replica-unobserved", f"{vol.name}: the replica at {missing} was not observed"
                )
            )
            continue
        if there.disk == DiskState.UP_TO_DATE and not here.in_sync:
            blockers.append(
                blocker(
                    "replica-behind",
                    f"{vol.name}: the copy at {other} is UpToDate and the one at {to_site} is"
                    f" {here.disk}/{here.connection}: start at {other}, or wait for the resync",
                    forceable=True,
                )
            )
    witness_down = snapshot.witness_errors.get(to_site)
    if witness_down is not None:
        blockers.append(witness_blocker(other, to_site, witness_down, c))
    epoch, epoch_source = promotion_epoch(snapshot, to_site)
    notes = [
        note("runs-nowhere", "no volume is primary and no VM runs at any site"),
        note("promotion-epoch", f"promotion epoch {epoch}: {epoch_source}"),
        *(note("unobserved", u) for u in snapshot.unobserved),
    ]
    steps: list[Step] = promote_steps(snapshot, other, to_site, blockers)
    vms = [vm.name for vm in c.vms]
    steps += start_vm_steps(snapshot, vms, other, to_site, "{name} runs nowhere")
    steps += start_service_steps(snapshot, [s.name for s in c.services], to_site)
    steps += verify_steps(c, to_site)
    return Plan(START, other, to_site, tuple(steps), tuple(blockers), tuple(notes))


def idle_replica(r: ReplicaView) -> bool:
    """Secondary, UpToDate and connected to a secondary, UpToDate peer: nothing writes
    through this volume at either site, and neither copy is newer."""
    return (
        r.running
        and r.role == Role.SECONDARY
        and r.peer_role == Role.SECONDARY
        and r.disk == DiskState.UP_TO_DATE
        and r.peer_disk == DiskState.UP_TO_DATE
        and r.connection == ConnState.CONNECTED
        and r.out_of_sync_bytes == 0
    )


def runs_nowhere(replicas: Sequence[ReplicaView], primary_here: Sequence[str]) -> str | None:
    """Why the cluster is seen to run nowhere from this site, or None when it may run."""
    if primary_here:
        return None
    if not replicas or not all(idle_replica(r) for r in replicas):
        return None
    return (
        f"every replica here ({', '.join(r.volume for r in replicas)}) is secondary, UpToDate"
        " and connected to a secondary, UpToDate peer, and nothing runs here"
    )


@dataclass(frozen=True)
class StartView:
    """What the agent at `site` knows this cycle about a cluster that may run nowhere."""

    site: str
    now: float
    preferred: bool  # the configured primary site
    has_quorum: bool
    peer_seen: bool
    witness_reachable: bool
    lease_holder: str | None
    maintenance: bool
    busy: str | None  # a drorch run holds the cluster (its id), else None
    taking_over: bool  # a takeover runs, or this site runs the cluster
    idle_since: float | None  # since when it ran nowhere, as seen from here
    idle_reason: str = ""
    start_running: bool = False
    start_failed: str | None = None


def decide_start(v: StartView, *, takeover_wait: float, mode: FailoverMode) -> Takeover:
    def none(why: str) -> Takeover:
        return Takeover(TakeoverAction.NONE, why)

    if v.idle_since is None:
        return none("the cluster runs (or may run) somewhere")
    if v.start_running:
        return Takeover(TakeoverAction.RUNNING, "the cluster-start runbook is running")
    if v.start_failed is not None:
        return Takeover(
            TakeoverAction.REFUSED,
            f"the cluster-start runbook failed ({v.start_failed}); the agent does not retry"
            " it on its own until the cluster changes: an operator resumes it",
        )
    if v.maintenance:
        return none("maintenance mode: the cluster stays stopped")
    if v.taking_over:
        return none("a takeover owns the cluster")
    if v.busy is not None:
        return none(f"drorch run {v.busy or '?'} holds the cluster")
    if not v.peer_seen:
        return none("the peer is not seen: a lost peer is a takeover, not a start")
    if not v.has_quorum:
        return none("no quorum here")
    if not v.witness_reachable:
        return none("the witness does not answer: nobody can take a grant to start it")
    if v.lease_holder not in (None, v.site):
        return none(f"site {v.lease_holder} holds the lease: it runs or starts the cluster")
    # this site as the holder (a restarted witness names its recorded holder during its
    # grace) does not stop it: only this site can then take the grant
    wait = takeover_wait if v.preferred else 2 * takeover_wait
    idle_for = v.now - v.idle_since
    where = "the configured primary site" if v.preferred else "not the configured primary site"
    if idle_for < wait:
        return Takeover(
            TakeoverAction.WAIT,
            f"the cluster runs nowhere ({v.idle_reason}) for {idle_for:.1f}s; site {v.site}"
            f" ({where}) starts it after {wait:g}s",
            wait - idle_for,
        )
    why = f"the cluster has run nowhere for {idle_for:.1f}s ({v.idle_reason})"
    if mode is FailoverMode.MANUAL:
        return Takeover(
            TakeoverAction.READY,
            f"{why}; start it with `drorch start --to {v.site}`",
        )
    return Takeover(TakeoverAction.RUN, f"starting the cluster at site {v.site}, because {why}")
