"""Is a replica guaranteed current? The one answer `drorch status` and plans give.

Pure: from the snapshot's replica view and the witness's outdate records. A secondary is
guaranteed current only while it is connected, UpToDate and nothing is in flight; a
record at the witness says since when it is not (its primary wrote alone from that
epoch). A disconnected copy without a record is *not guaranteed*: the replica cannot
know what its peer wrote since.
"""

from __future__ import annotations

from drorch.decide.snapshot import Snapshot
from drorch.model.states import DiskState, Role


def currency(snapshot: Snapshot, volume: str, site: str) -> tuple[bool, str]:
    """(guaranteed current, why) for the copy of `volume` at `site`."""
    since = snapshot.outdated_since(volume, site)
    if since is not None:
        return False, f"outdated since epoch {since} (witness record: the other site wrote alone)"
    replica = snapshot.replica(volume, site)
    if replica is None:
        return False, "unknown: not observed"
    if replica.role == Role.PRIMARY:
        return True, "primary: this is the copy being written"
    if replica.disk != DiskState.UP_TO_DATE:
        return False, f"disk {replica.disk}"
    if replica.in_sync:
        return True, "connected, UpToDate, nothing out of sync or lagging"
    if replica.connection != "Connected":
        why = f"{replica.connection}: the peer may have written since the link was lost"
        if snapshot.witness_asked(site):
            why += " (no outdate record at the witness yet)"
        elif snapshot.witness_errors.get(site):
            why += f" (witness not asked: {snapshot.witness_errors[site]})"
        return False, why
    return False, (f"{replica.out_of_sync_bytes} B out of sync, {replica.lag_bytes} B lagging")
