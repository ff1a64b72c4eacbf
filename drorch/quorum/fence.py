"""The client side of peer fencing through the witness: what the fence-peer hooks
(`drorch repl fence-peer`, `drorch drbd fence-peer`) and promotion checks ask.

- `record_outdate`: as this site, look at the witness's view (`want:false`: no lease
  changes) and, if this site holds the lease, ask it to record durably that only this
  site's copy of the volume is current. The answer comes only after the record is on the
  witness's disk, so a `recorded` epoch means the peer can no longer be promoted without a
  data-loss acknowledgement.
- `witness_view`: the vote as seen from one site (holder, epoch, outdated volumes there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drorch.model.types import Witness
from drorch.quorum.client import NotCurrent, NotHolder, QuorumConnection, QuorumError, Vote


class WitnessSetupError(ValueError):
    """The cluster file does not say how this site talks to the witness."""


@dataclass(frozen=True)
class OutdateAnswer:
    """What the witness said. `recorded`: the epoch since which only this site's copy is
    current (durable). `refused`: why the witness would not record (not the holder)."""

    vote: Vote
    recorded: int | None = None
    refused: str | None = None
    serial: int = 0  # the record's serial (`record_current` clears only this write)


def connection(
    witness: Witness,
    cluster: str,
    site: str,
    node: str,
    base_dir: Path,
    timeout: float = 5.0,
) -> QuorumConnection:
    """A connection (not yet connected) as `node` of `site`, with the site's pinned cert."""
    cert, key = witness.cert_for(site), witness.key_for(site)
    if not cert or not key:
        raise WitnessSetupError("the witness has no client cert/key configured for this site")
    return QuorumConnection(
        witness.address,
        witness.fingerprint,
        base_dir / cert,
        base_dir / key,
        cluster,
        site,
        node,
        timeout=timeout,
    )


def witness_view(
    witness: Witness, cluster: str, site: str, node: str, base_dir: Path, timeout: float = 5.0
) -> Vote:
    """One `want:false` look at the witness as `site` (QuorumError when it cannot)."""
    with connection(witness, cluster, site, node, base_dir, timeout) as conn:
        return conn.heartbeat(1, want=False, nodes=0)


def record_outdate(
    witness: Witness,
    cluster: str,
    site: str,
    node: str,
    volume: str,
    base_dir: Path,
    timeout: float = 5.0,
    force: bool = False,
) -> OutdateAnswer:
    """Ask the witness to record that only `site`'s copy of `volume` is current.

    Sends `outdate` only when the `want:false` vote says this site holds the lease (a
    site that does not gets `not_holder` anyway; asking first keeps the log quiet).
    A site whose own copy the witness records as outdated gets `not_current` unless
    `force` (only after a promotion forced with a data-loss acknowledgement).
    Raises QuorumError (unreachable, timeout, refused) or WitnessSetupError."""
    with connection(witness, cluster, site, node, base_dir, timeout) as conn:
        vote = conn.heartbeat(1, want=False, nodes=0)
        if not vote.granted:
            return OutdateAnswer(vote)
        try:
            record = conn.outdate_record(volume, force)
            return OutdateAnswer(vote, recorded=record.epoch, serial=record.serial)
        except (NotHolder, NotCurrent) as exc:  # lease lapsed meanwhile / own copy stale
            return OutdateAnswer(vote, refused=str(exc))


def record_current(
    witness: Witness,
    cluster: str,
    site: str,
    node: str,
    volume: str,
    base_dir: Path,
    timeout: float = 5.0,
    serial: int | None = None,
) -> int:
    """Clear the record of `volume` (its peer is UpToDate again); the cluster's epoch.
    With `serial`: only that write of the record (RecordChanged if re-written since)."""
    with connection(witness, cluster, site, node, base_dir, timeout) as conn:
        return conn.current(volume, serial)


__all__ = [
    "OutdateAnswer",
    "QuorumError",
    "WitnessSetupError",
    "connection",
    "record_current",
    "record_outdate",
    "witness_view",
]
