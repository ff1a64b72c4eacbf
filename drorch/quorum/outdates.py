"""Which replica is current: the witness's outdate records, a pure book.

A record says "for cluster C, only site S's copy of volume V is current, since epoch E":
the site holding the lease wrote alone after it lost its replication peer. Only the
holder may set (`outdate`) or clear (`current`) a record; the server checks that against
the `GrantBook` before it asks this book. Records are durable state like grants: the
server persists a change before it answers, and they survive restarts and restart grace.

Votes carry, per asking site, the sorted list of volumes whose copy at that site is
outdated. The JSON text of that list is cached per (cluster, site) and rebuilt only when
the cluster's records change, so a vote costs one dictionary look-up more than before.
"""

from __future__ import annotations

from dataclasses import dataclass

from drorch.quorum.protocol import NO_OUTDATED, outdated_fragment


@dataclass(frozen=True)
class OutdateRecord:
    """Only `site`'s copy is current, since `epoch` (the epoch of the lease it held)."""

    site: str
    epoch: int


class OutdateBook:
    def __init__(self, records: dict[str, dict[str, OutdateRecord]] | None = None) -> None:
        self.records: dict[str, dict[str, OutdateRecord]] = {
            cluster: dict(volumes) for cluster, volumes in (records or {}).items() if volumes
        }
        self._fragments: dict[str, dict[str, str]] = {}  # cluster -> site -> JSON list

    def conflict(self, cluster: str, site: str, volume: str) -> OutdateRecord | None:
        """The record that says `site`'s own copy of `volume` is outdated, if any."""
        old = self.records.get(cluster, {}).get(volume)
        return old if old is not None and old.site != site else None

    def outdate(self, cluster: str, site: str, volume: str, epoch: int) -> tuple[int, bool, str]:
        """`site` (the holder, at `epoch`) wrote `volume` alone. Returns (the epoch since
        which the peer is outdated, whether the durable state changed, a reason)."""
        volumes = self.records.setdefault(cluster, {})
        old = volumes.get(volume)
        if old is not None and old.site == site:
            return (
                old.epoch,
                False,
                (
                    f"{volume}: only {site}'s copy is current since epoch {old.epoch} (already "
                    "recorded)"
                ),
            )
        volumes[volume] = OutdateRecord(site, epoch)
        self._changed(cluster)
        why = f"{volume}: only {site}'s copy is current since epoch {epoch}"
        if old is not None:
            why += f" (replaces: only {old.site}'s since epoch {old.epoch})"
        return epoch, True, why

    def current(self, cluster: str, volume: str) -> tuple[bool, str]:
        """Clear the record of `volume`. Returns (whether the durable state changed, why)."""
        volumes = self.records.get(cluster, {})
        old = volumes.pop(volume, None)
        if not volumes:
            self.records.pop(cluster, None)
        if old is None:
            return False, f"{volume}: no outdate record (nothing to clear)"
        self._changed(cluster)
        return True, f"{volume}: record cleared (was: only {old.site}'s since epoch {old.epoch})"

    def fragment(self, cluster: str, site: str) -> str:
        """The JSON list of volumes whose copy at `site` is outdated (votes embed it)."""
        if cluster not in self.records:
            return NO_OUTDATED
        by_site = self._fragments.setdefault(cluster, {})
        text = by_site.get(site)
        if text is None:
            text = by_site[site] = outdated_fragment(self.outdated_at(cluster, site))
        return text

    def outdated_at(self, cluster: str, site: str) -> dict[str, int]:
        """Volumes of `cluster` whose copy at `site` is outdated -> since which epoch."""
        volumes = self.records.get(cluster, {})
        return {v: r.epoch for v, r in sorted(volumes.items()) if r.site != site}

    def _changed(self, cluster: str) -> None:
        self._fragments.pop(cluster, None)

    def durable(self) -> dict[str, dict[str, OutdateRecord]]:
        return {c: dict(sorted(v.items())) for c, v in sorted(self.records.items()) if v}
