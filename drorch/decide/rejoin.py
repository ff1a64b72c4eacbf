"""A site that returns rejoins as SECONDARY and resyncs (PURE): per local replica, what
the agent does this cycle, and why.

The evidence is the witness's: the site that holds the lease at epoch N is the one whose
copy is current. A copy here that is older than that grant — primary at an epoch below
N, or secondary after both sides wrote while apart — belongs to a site that was fenced
or failed over. It is never promoted and never made a sync source: it is demoted, its
changes since the split are discarded (a sync primary that lost its peer acknowledged
none of them until the witness recorded the peer outdated, which it did not for the site
that lost; an async copy's tail is the RPO the failover already took), and it resyncs
from the holder as a sync target. Without that evidence (the witness unreachable, or
nobody holding, or an epoch that does not say this copy is older) the agent does
nothing on its own: a person resolves the split brain.

The holder's side does the one thing it must: a primary whose peer was refused
(split brain, a stale primary) dials again, so the returning copy can connect once it
has demoted or discarded. Failback is never automatic: nothing here promotes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class ReplicaView:
    """One local replica as its driver reports it. `running`: a daemon answers (False:
    none runs, so nothing here can write through it). `refused`: why the last connect
    was refused, when the replica is StandAlone because of it."""

    volume: str
    running: bool
    role: str = "unknown"  # primary | secondary | unknown
    disk: str = "unknown"
    connection: str = "unknown"
    epoch: int = 0
    split_brain: bool = False
    refused: str | None = None
    percent_in_sync: float = 100.0
    resync_eta: float | None = None
    out_of_sync_bytes: int = 0
    peer_role: str = "unknown"  # as this replica last heard from its peer
    peer_disk: str = "unknown"


@dataclass(frozen=True)
class LeaseView:
    """The witness as this site sees it: who holds the lease, at which epoch."""

    reachable: bool
    holder: str | None
    epoch: int


class RejoinAction(StrEnum):
    NONE = "none"
    START = "start"  # start the replica's daemon, as secondary
    DEMOTE = "demote"  # a stale primary: become secondary
    DISCARD_LOCAL = "discard-local"  # split brain, superseded here: resync from the holder
    CONNECT = "connect"  # StandAlone after a refusal: dial again
    BLOCKED = "blocked"  # needs a person (the reason says what)


@dataclass(frozen=True)
class RejoinStep:
    volume: str
    action: RejoinAction
    reason: str


def decide_rejoin(
    r: ReplicaView,
    *,
    site: str,
    peer: str,
    lease: LeaseView | None,
    peer_seen: bool,
    maintenance: bool = False,
    takeover_running: bool = False,
) -> RejoinStep:
    def step(action: RejoinAction, reason: str) -> RejoinStep:
        return RejoinStep(r.volume, action, reason)

    if maintenance:
        return step(RejoinAction.NONE, "maintenance mode: the agent acts on nothing")
    if takeover_running:
        return step(RejoinAction.NONE, "the site-failover runbook owns the volumes now")
    if not r.running:
        return step(
            RejoinAction.START,
            f"no replicator answers for {r.volume} here: start it as secondary (it never"
            " starts primary)",
        )
    peer_holds = lease is not None and lease.reachable and lease.holder == peer
    here_holds = lease is not None and lease.reachable and lease.holder == site
    superseded = peer_holds and lease is not None and lease.epoch > r.epoch
    if r.role == "primary":
        if superseded:
            assert lease is not None
            return step(
                RejoinAction.DEMOTE,
                f"site {peer} holds the lease at epoch {lease.epoch}, newer than this"
                f" primary's epoch {r.epoch}: this copy is stale; demote it and rejoin as"
                " secondary",
            )
        if here_holds and peer_seen and (r.split_brain or r.refused):
            why = "split brain" if r.split_brain else r.refused
            return step(
                RejoinAction.CONNECT,
                f"site {site} holds the lease and its copy is current; the peer's copy was"
                f" refused ({why}): dial again so it can resync once it has stepped down",
            )
        return step(RejoinAction.NONE, f"primary at epoch {r.epoch}")
    if r.role != "secondary":
        return step(RejoinAction.NONE, f"role {r.role}: nothing to decide")
    if r.split_brain:
        if superseded and peer_seen:
            assert lease is not None
            return step(
                RejoinAction.DISCARD_LOCAL,
                f"split brain, and the witness granted site {peer} epoch {lease.epoch} after"
                f" this copy's epoch {r.epoch}: the changes here since the split belong to a"
                f" fenced or failed-over site; discard them and resync from {peer}"
                f" ({r.out_of_sync_bytes} bytes out of sync here)",
            )
        held = "nobody" if lease is None or lease.holder is None else f"site {lease.holder}"
        if lease is None or not lease.reachable:
            held = "the witness is unreachable"
        return step(
            RejoinAction.BLOCKED,
            f"split brain, and nothing says this copy is the older one ({held}; epoch here"
            f" {r.epoch}): resolve it by hand (`drorch repl resolve`)",
        )
    if r.refused and peer_holds and peer_seen:
        return step(
            RejoinAction.CONNECT,
            f"secondary, StandAlone after a refused connect ({r.refused}); site {peer} holds"
            " the lease: dial again to resync from it",
        )
    if r.connection == "SyncTarget":
        eta = "" if r.resync_eta is None else f", about {r.resync_eta:.0f}s left"
        return step(
            RejoinAction.NONE,
            f"secondary, resyncing from {peer}: {r.percent_in_sync:g}% in sync{eta}",
        )
    return step(RejoinAction.NONE, f"secondary, {r.connection}, disk {r.disk}")
