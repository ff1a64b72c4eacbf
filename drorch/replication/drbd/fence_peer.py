"""drorch's DRBD fence-peer handler: ask the quorum daemon before outdating the peer.

DRBD (with `fencing resource-only`) runs the handler when it loses the replication link
and needs to know whether the peer may still write. The handler's exit code tells DRBD
what happened (drbd.conf(5), "fence-peer"):

    3  the peer's disk was already Inconsistent
    4  the peer's disk was set to Outdated (or already was)   -> this node may go on
    5  the peer could not be reached
    6  the peer refused to be outdated: it is Primary           -> this node is Outdated
    7  the peer was fenced off the cluster (STONITH)
    anything else: the handler is "broken": nothing is outdated, promotion is refused

drorch never guesses, and never answers "outdated" for a peer nothing has outdated. It
asks the witness as this node's site (`drorch.quorum.fence.record_outdate`):

- this site holds quorum: the witness is asked to record that only this site's copy of
  the resource is current; once that record is durable on the witness -> 4. The peer can
  no longer be promoted without `--force --accept-data-loss` (plan, agent, promote all
  check the record), and it self-fences when its lease runs out;
- the peer's site holds quorum: the peer is the active side -> 6;
- the witness refuses the record (the lease lapsed meanwhile), nobody holds quorum, this
  site's lease is in restart grace, no witness is configured, or the witness cannot be
  asked -> 1, which DRBD logs as "fence-peer helper broken": nothing is outdated, I/O
  stays suspended (`fencing resource-only` with `suspend-io`), and DRBD retries.

DRBD passes DRBD_RESOURCE and DRBD_PEER_NODE_ID (plus DRBD_NODE_ID_<id>=<host>).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from drorch.model.types import Cluster, Witness
from drorch.quorum.client import QuorumError
from drorch.quorum.fence import OutdateAnswer, WitnessSetupError, record_outdate
from drorch.replication.drbd.render import peers

PEER_INCONSISTENT = 3
PEER_OUTDATED = 4
PEER_UNREACHABLE = 5
PEER_IS_PRIMARY = 6
PEER_FENCED = 7
UNDECIDED = 1  # not a fence-peer answer: DRBD outdates nobody


@dataclass(frozen=True)
class FenceDecision:
    exit_code: int
    reason: str


@dataclass(frozen=True)
class FenceContext:
    resource: str
    node: str  # this node
    site: str
    peer_node: str
    peer_site: str


def decide_fence_peer(
    ctx: FenceContext, answer: OutdateAnswer | None, error: str | None
) -> FenceDecision:
    """Pure: the exit code for DRBD, from the witness's answer (or why there is none)."""
    where = f"{ctx.resource}: {ctx.node} (site {ctx.site}) lost {ctx.peer_node}"
    if answer is None:
        return FenceDecision(
            UNDECIDED, f"{where}; cannot ask the witness ({error}): outdating nobody"
        )
    vote = answer.vote
    if answer.recorded is not None:
        return FenceDecision(
            PEER_OUTDATED,
            f"{where}; site {ctx.site} holds quorum (epoch {vote.epoch}) and the witness "
            f"recorded durably that only site {ctx.site}'s copy is current since epoch "
            f"{answer.recorded}: site {ctx.peer_site} is Outdated",
        )
    if vote.holder == ctx.peer_site:
        return FenceDecision(
            PEER_IS_PRIMARY,
            f"{where}; site {ctx.peer_site} holds quorum (epoch {vote.epoch}): "
            "the peer is the active side, this node's data becomes Outdated",
        )
    if answer.refused is not None:
        return FenceDecision(
            UNDECIDED,
            f"{where}; the witness did not record the outdate ({answer.refused}): outdating nobody",
        )
    if vote.granted:
        return FenceDecision(
            UNDECIDED,
            f"{where}; site {ctx.site} holds quorum (epoch {vote.epoch}) but the witness "
            "has recorded no outdate: outdating nobody",
        )
    if vote.holder == ctx.site:
        return FenceDecision(
            UNDECIDED,
            f"{where}; site {ctx.site} is the recorded holder but its lease is not live "
            f"(witness restart grace, epoch {vote.epoch}): outdating nobody yet",
        )
    return FenceDecision(
        UNDECIDED,
        f"{where}; no site holds quorum (epoch {vote.epoch}): outdating nobody",
    )


class FenceSetupError(ValueError):
    """The handler cannot work out who is who from the cluster file and DRBD's env."""


def fence_context(
    cluster: Cluster, environ: Mapping[str, str], node: str | None = None
) -> FenceContext:
    """Who am I, who is the peer, at which sites: from DRBD_RESOURCE, DRBD_PEER_NODE_ID
    (drorch's rendered node ids) and `node` (default: this host's short name, which is
    also what DRBD matches `on <host>` against)."""
    resource = environ.get("DRBD_RESOURCE")
    if not resource:
        raise FenceSetupError("DRBD_RESOURCE is not set: run me as DRBD's fence-peer handler")
    try:
        volume = cluster.volume(resource)
    except KeyError:
        raise FenceSetupError(f"resource {resource} is not a volume of {cluster.name}") from None
    replicas = peers(cluster, volume)
    me = node or socket.gethostname().split(".")[0]
    if me not in {p.node for p in replicas}:
        raise FenceSetupError(f"this node ({me}) holds no replica of {resource}")
    peer_id = environ.get("DRBD_PEER_NODE_ID")
    others = [p for p in replicas if p.node != me]
    if peer_id is not None and peer_id.isdigit():
        others = [p for p in others if p.node_id == int(peer_id)] or others
    if not others:
        raise FenceSetupError(f"{resource} has no peer of {me}")
    peer = others[0]
    return FenceContext(
        resource=resource,
        node=me,
        site=cluster.node(me)[0].name,
        peer_node=peer.node,
        peer_site=cluster.node(peer.node)[0].name,
    )


Query = Callable[[Witness, FenceContext], OutdateAnswer]


def ask_witness(witness: Witness, ctx: FenceContext, cluster: str, base_dir: Path) -> OutdateAnswer:
    """Ask the quorum daemon (mutual TLS, pinned certificate) to record the outdate."""
    try:
        return record_outdate(witness, cluster, ctx.site, ctx.node, ctx.resource, base_dir)
    except WitnessSetupError as exc:
        raise FenceSetupError(str(exc)) from exc


def run_fence_peer(
    cluster: Cluster,
    environ: Mapping[str, str],
    *,
    node: str | None = None,
    base_dir: Path = Path("."),
    query: Query | None = None,
) -> FenceDecision:
    """Act: build the context, ask the witness, decide. Never raises for a witness
    problem (that is an UNDECIDED answer); raises FenceSetupError for a broken setup."""
    ctx = fence_context(cluster, environ, node)
    if cluster.witness is None:
        return decide_fence_peer(ctx, None, "no witness is configured")
    ask: Query = query or (lambda w, c: ask_witness(w, c, cluster.name, base_dir))
    try:
        answer = ask(cluster.witness, ctx)
    except (QuorumError, OSError, FenceSetupError) as exc:
        return decide_fence_peer(ctx, None, f"{type(exc).__name__}: {exc}")
    return decide_fence_peer(ctx, answer, None)
