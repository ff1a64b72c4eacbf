"""Which replica is current: the witness's outdate records, a pure book.

A record says "for cluster C, only site S's copy of volume V is current, since epoch E":
the site holding the lease wrote alone after it lost its replication peer. Only the
holder may set (`outdate`) or clear (`current`) a record; the server checks that against
the `GrantBook` before it asks this book. Records are durable state like grants: the
server persists a change before it answers, and they survive restarts and restart grace.

Every accepted `outdate` (a repeat of a standing record too) gives the record a new
`serial`, from one counter that only grows (durable: it never repeats, even after the
record is cleared and written again). A `current` that names a serial clears only that
write of the record: a `current` sent when the peer was UpToDate, arriving after the peer
was lost again and a newer `outdate` re-wrote the record, is refused (`record_changed`)
and the record stands. This is compare-and-clear, as Patroni's DCS index guards a
leader key: the holder's own messages travel on separate connections (the fence-peer and
unfence-peer hooks are separate processes) and may arrive in either order.

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
    serial: int = 0  # this write of the record (0: written before serials existed)


class OutdateBook:
    def __init__(
        self, records: dict[str, dict[str, OutdateRecord]] | None = None, serial: int = 0
    ) -> None:
        self.records: dict[str, dict[str, OutdateRecord]] = {
            cluster: dict(volumes) for cluster, volumes in (records or {}).items() if volumes
        }
        seen = [r.serial for volumes in self.records.values() for r in volumes.values()]
        self.serial = max([serial, *seen])  # the last serial given out
        self._fragments: dict[str, dict[str, str]] = {}  # cluster -> site -> JSON list

    def conflict(self, cluster: str, site: str, volume: str) -> OutdateRecord | None:
        """The record that says `site`'s own copy of `volume` is outdated, if any."""
        old = self.records.get(cluster, {}).get(volume)
        return old if old is not None and old.site != site else None

    def outdate(
        self, cluster: str, site: str, volume: str, epoch: int
    ) -> tuple[OutdateRecord, str]:
        """`site` (the holder, at `epoch`) wrote `volume` alone. Returns the record (its
        epoch: since when the peer is outdated; a new serial, so the durable state always
        changes) and a reason."""
        volumes = self.records.setdefault(cluster, {})
        old = volumes.get(volume)
        self.serial += 1
        if old is not None and old.site == site:
            volumes[volume] = record = OutdateRecord(site, old.epoch, self.serial)
            why = (
                f"{volume}: only {site}'s copy is current since epoch {old.epoch} (already "
                f"recorded; record {old.serial} is record {self.serial} now)"
            )
            return record, why
        volumes[volume] = record = OutdateRecord(site, epoch, self.serial)
        self._changed(cluster)
        why = f"{volume}: only {site}'s copy is current since epoch {epoch} (record {self.serial})"
        if old is not None:
            why += f" (replaces: only {old.site}'s since epoch {old.epoch})"
        return record, why

    def current(self, cluster: str, volume: str, serial: int | None = None) -> tuple[bool, str]:
        """Clear the record of `volume` (with `serial`: only if the record still has it).
        Returns (whether it is gone now, why): False with a standing record means refused."""
        volumes = self.records.get(cluster, {})
        old = volumes.get(volume)
        if old is None:
            return True, f"{volume}: no outdate record (nothing to clear)"
        if serial is not None and serial != old.serial:
            return False, (
                f"current {volume} for record {serial}: the record was written again since "
                f"(record {old.serial}: only {old.site}'s copy is current since epoch "
                f"{old.epoch}); it stands"
            )
        del volumes[volume]
        if not volumes:
            self.records.pop(cluster, None)
        self._changed(cluster)
        return True, (
            f"{volume}: record {old.serial} cleared (was: only {old.site}'s since epoch "
            f"{old.epoch})"
        )

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
