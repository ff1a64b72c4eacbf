"""Does this partition have quorum? PURE.

Quorum is a majority of the cluster's nodes. The witness breaks the tie only when the
split is exactly half: then the half whose site holds the witness's grant has quorum.
A minority never has quorum, whatever the witness says (it may be stale or lying: the
majority of nodes outvotes it).

    decide_quorum(total_nodes=2, members=("a1",), witness=WitnessView(...))
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class QuorumBasis(StrEnum):
    MAJORITY = "majority"
    WITNESS = "witness"
    NONE = "none"


@dataclass(frozen=True)
class WitnessView:
    """What the witness said to this site. `granted`: this site holds a lease that is still
    valid by its own (conservative) count; `reachable` False: no answer lately."""

    reachable: bool
    granted: bool = False
    holder: str | None = None
    epoch: int = 0
    lease_left: float = 0.0


@dataclass(frozen=True)
class QuorumDecision:
    has_quorum: bool
    basis: QuorumBasis
    reason: str
    epoch: int = 0


def decide_quorum(
    total_nodes: int, members: tuple[str, ...], site: str, witness: WitnessView | None
) -> QuorumDecision:
    """`members`: the nodes this node can see, itself included (heartbeats within
    member_timeout). `witness` None means the cluster has no witness configured."""
    if total_nodes < 1:
        raise ValueError("a cluster has at least one node")
    seen = len(members)
    if seen > total_nodes:
        raise ValueError(f"{seen} members seen in a cluster of {total_nodes} nodes")
    of = f"{seen} of {total_nodes} nodes"
    if 2 * seen > total_nodes:
        return QuorumDecision(True, QuorumBasis.MAJORITY, f"majority: {of} are members")
    if 2 * seen < total_nodes:
        return QuorumDecision(
            False,
            QuorumBasis.NONE,
            f"minority: only {of} are members; a minority never has quorum",
        )
    if witness is None:
        return QuorumDecision(
            False,
            QuorumBasis.NONE,
            f"exactly half ({of}) and no witness is configured to break the tie",
        )
    if witness.granted:
        # A lease granted earlier is valid until it runs out (the keeper counts it from the
        # send time of the heartbeat that earned it, minus a margin), reachable or not.
        late = "" if witness.reachable else " (the witness is unreachable now)"
        return QuorumDecision(
            True,
            QuorumBasis.WITNESS,
            f"exactly half ({of}); the witness granted site {site} the lease"
            f" (epoch {witness.epoch}, {witness.lease_left:g}s left){late}",
            epoch=witness.epoch,
        )
    if not witness.reachable:
        return QuorumDecision(
            False,
            QuorumBasis.NONE,
            f"exactly half ({of}) and the witness is unreachable: no tiebreaker",
        )
    holder = f"site {witness.holder} holds it" if witness.holder else "it granted nobody"
    return QuorumDecision(
        False,
        QuorumBasis.NONE,
        f"exactly half ({of}) and the witness refused site {site} the lease: {holder}",
    )
