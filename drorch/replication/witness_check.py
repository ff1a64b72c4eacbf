"""Before a replica is promoted: ask the witness whether this site's copy is current.

The witness's outdate records (docs/quorum-protocol.md) say which site's copy of a volume
is current after one site wrote alone. A promotion is refused (`UnsafeOperation`, exit 3)
unless `--force --accept-data-loss` when, with a witness configured:

- the witness marks the volume outdated at this site ("dbdata at B is outdated since
  epoch 7: A wrote alone after the link failed");
- this site does not hold the quorum lease (the promotion epoch comes from the witness's
  grant; the agent holds the lease at the site it fails over to);
- the witness cannot be asked (a copy that may be stale is not promoted on a guess).

Without a witness nothing is checked here (the replica's own disk state still is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from drorch.model.types import Cluster, Witness
from drorch.quorum.client import QuorumError, Vote
from drorch.quorum.fence import WitnessSetupError, witness_view
from drorch.replication.base import UnsafeOperation

View = Callable[[Witness, str, str, str, Path], Vote]


@dataclass(frozen=True)
class PromotionCheck:
    """`epoch`: the witness grant's epoch to promote with (None: no witness, or forced
    without the lease). `notes`: refusals that --force --accept-data-loss overrode."""

    epoch: int | None
    notes: tuple[str, ...] = ()
    overrode_record: bool = False  # forced past the witness's record: claim it after


def claim_after_forced_promotion(cluster: Cluster, volume: str, node: str, base_dir: Path) -> str:
    """After a promotion forced past the witness's record: record that only this site's
    copy is current now (the other site's later writes are the ones given up), so the
    other copy cannot be promoted without an acknowledgement either. Returns what
    happened, for the operator (never raises: the promotion already happened)."""
    from drorch.quorum.fence import record_outdate

    witness = cluster.witness
    if witness is None:
        return "no witness"
    site = cluster.node(node)[0].name
    try:
        answer = record_outdate(witness, cluster.name, site, node, volume, base_dir, force=True)
    except (QuorumError, WitnessSetupError, OSError) as exc:
        return f"the witness could not record {site} as current ({exc}): record it again"
    if answer.recorded is None:
        why = answer.refused or "this site does not hold the lease"
        return f"the witness did not record {site} as current ({why})"
    return (
        f"the witness now records only {site}'s copy of {volume} as current "
        f"(since epoch {answer.recorded})"
    )


def outdated_reason(volume: str, site: str, writer: str, since: int | None) -> str:
    """The one wording for an outdated copy (plan blockers use it too)."""
    when = f" since epoch {since}" if since is not None else ""
    return f"{volume} at {site} is outdated{when}: {writer} wrote alone after the link failed"


def check_promotion(
    cluster: Cluster,
    volume: str,
    node: str,
    base_dir: Path,
    *,
    force: bool,
    accept_data_loss: bool,
    view: View | None = None,
) -> PromotionCheck:
    """Ask the witness as `node`'s site; raise UnsafeOperation unless forced."""
    witness = cluster.witness
    if witness is None:
        return PromotionCheck(None)
    site = cluster.node(node)[0].name
    others = [s.name for s in cluster.sites if s.name != site]
    writer = others[0] if len(others) == 1 else "another site"
    forced = force and accept_data_loss
    ask = view or (lambda w, c, s, n, b: witness_view(w, c, s, n, b))
    refusals: list[str] = []
    epoch: int | None = None
    try:
        vote = ask(witness, cluster.name, site, node, base_dir)
    except (QuorumError, WitnessSetupError, OSError) as exc:
        refusals.append(f"cannot ask the witness whether {volume} at {site} is current ({exc})")
    else:
        if volume in vote.outdated:
            refusals.append(
                outdated_reason(volume, site, writer, dict(vote.outdated_since).get(volume))
            )
        if vote.granted:
            epoch = vote.epoch
        else:
            refusals.append(
                f"site {site} does not hold the quorum lease (holder: {vote.holder or 'none'}, "
                f"epoch {vote.epoch}); the promotion epoch comes from the witness's grant"
            )
    if refusals and not forced:
        raise UnsafeOperation(
            f"promote {volume} at {node}: "
            + "; ".join(refusals)
            + " (--force --accept-data-loss to promote anyway)"
        )
    overrode = any(r.startswith(f"{volume} at {site} is outdated") for r in refusals)
    return PromotionCheck(epoch, tuple(refusals), overrode)
