"""The unshipped ledger: how many writes a primary accepted that its peer does not have.

An async primary acknowledges a write before the peer has it; a primary that lost its
peer (async, or sync with `fencing: dont-care`, or after an outdate) acknowledges writes
the peer never gets. If that site is then lost and the peer is promoted, those writes
are the failover's RPO, and only this side ever knew them. So this side counts them:

- every write while not shipping (`note`), and every data frame still in flight when
  the link dies (`note_lost_frames`: sent, never acknowledged by the peer);
- with the wall-clock times of the first and the last, and the bytes.

The ledger is made durable (`durable.write_atomic`, a file beside the metadata) before
a FLUSH or FUA write that covers the counted writes is acknowledged, and at link loss:
a value the guest saw as durable is counted durably too. Unflushed writes may be counted
in memory only, as they may be lost in a crash anyway.

What becomes of it:
- the peer got everything (this side was the resync's source): cleared;
- this side was resynced *from* the peer (it came back after a failover, and its own
  changes since the split were discarded): the ledger becomes the `discarded` record,
  kept (durable) and shown in status until the next discard: the exact count of the
  writes this site acknowledged that the failover lost. It is an upper bound by at most
  the frames in flight at the link's loss that the peer received but whose
  acknowledgement never came back.

Imports nothing else of pyrepl.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drorch.durable import write_atomic

log = logging.getLogger("drorch.pyrepl")


@dataclass(frozen=True)
class Tally:
    writes: int = 0
    bytes: int = 0
    first: float | None = None  # wall clock (epoch seconds)
    last: float | None = None

    def add(self, writes: int, nbytes: int, first: float, last: float) -> Tally:
        return Tally(
            self.writes + writes,
            self.bytes + nbytes,
            first if self.first is None else min(self.first, first),
            last if self.last is None else max(self.last, last),
        )

    @property
    def seconds(self) -> float:
        """From the first to the last counted write."""
        if self.first is None or self.last is None:
            return 0.0
        return round(self.last - self.first, 3)


@dataclass(frozen=True)
class Discarded:
    tally: Tally
    at: float  # when the resync from the peer finished (wall clock)
    generation: str  # this side's data generation that was discarded


def _tally(data: Any) -> Tally:
    if not isinstance(data, dict):
        return Tally()
    first, last = data.get("first"), data.get("last")
    return Tally(
        int(data.get("writes", 0)),
        int(data.get("bytes", 0)),
        None if first is None else float(first),
        None if last is None else float(last),
    )


class Ledger:
    """Caller holds the engine lock for every method."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.open = Tally()
        self.discarded: Discarded | None = None
        self._dirty = False
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:  # never block a start on bookkeeping
            log.warning("%s: unreadable, starting an empty ledger: %s", self.path, exc)
            return
        if not isinstance(data, dict):
            return
        self.open = _tally(data.get("open"))
        d = data.get("discarded")
        if isinstance(d, dict):
            self.discarded = Discarded(
                _tally(d.get("tally")), float(d.get("at", 0.0)), str(d.get("generation", ""))
            )

    # ---------------------------------------------------------------- counting
    def note(self, nbytes: int, now: float) -> None:
        """One write accepted while not shipping."""
        self.open = self.open.add(1, nbytes, now, now)
        self._dirty = True

    def note_lost_frames(self, writes: int, nbytes: int, first: float, now: float) -> None:
        """Data frames in flight when the link died: the peer may not have them."""
        if writes:
            self.open = self.open.add(writes, nbytes, first, now)
            self._dirty = True

    # ---------------------------------------------------------------- outcomes
    def peer_has_all(self) -> None:
        """This side's resync to the peer finished: nothing of it is only here now."""
        if self.open.writes:
            self.open = Tally()
            self.persist(force=True)

    def discard(self, now: float, generation: str) -> Discarded | None:
        """This side was resynced from the peer: what it alone had is gone."""
        if not self.open.writes:
            return None
        self.discarded = Discarded(self.open, now, generation)
        self.open = Tally()
        self.persist(force=True)
        return self.discarded

    # ---------------------------------------------------------------- durability
    def persist(self, *, force: bool = False) -> None:
        """Make the ledger durable if it changed (before a FLUSH/FUA is acknowledged)."""
        if not (self._dirty or force):
            return
        body: dict[str, Any] = {"open": asdict(self.open)}
        if self.discarded is not None:
            body["discarded"] = {
                "tally": asdict(self.discarded.tally),
                "at": self.discarded.at,
                "generation": self.discarded.generation,
            }
        write_atomic(self.path, json.dumps(body, sort_keys=True).encode())
        self._dirty = False

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unshipped": _as_dict(self.open) if self.open.writes else None}
        d = self.discarded
        out["discarded"] = (
            None
            if d is None
            else {**_as_dict(d.tally), "discarded_at": _iso(d.at), "generation": d.generation}
        )
        return out


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _as_dict(t: Tally) -> dict[str, Any]:
    return {
        "writes": t.writes,
        "bytes": t.bytes,
        "first": _iso(t.first),
        "last": _iso(t.last),
        "seconds": t.seconds,
    }
