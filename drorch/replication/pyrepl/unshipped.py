"""The unshipped ledger: how many writes a primary accepted that its peer does not have.

An async primary acknowledges a write before the peer has it; a primary that lost its
peer (async, or sync with `fencing: dont-care`, or after an outdate) acknowledges writes
the peer never gets. If that site is then lost and the peer is promoted, those writes
are the failover's RPO, and only this side ever knew them. So this side counts them:

- every write while not shipping (`note`), and every data frame still in flight when
  the link dies (`note_lost_frames`: sent, never acknowledged by the peer);
- with the wall-clock times of the first and the last, and the bytes.

The ledger is made durable (a file beside the metadata) before a FLUSH or FUA write
that covers the counted writes is acknowledged, at link loss and at a clean stop: a
value the guest saw as durable is counted durably too. Unflushed writes may be counted
in memory only, as they may be lost in a crash anyway. A primary without a peer makes
it durable before every FUA write it acknowledges, so the file is a two-slot file
rewritten in place (`slot_file.py`: one write and one fdatasync, not the atomic
replace's temporary file, rename and two fsyncs); a ledger file of the older JSON format
is read as before and converted at the first update.

What a crash takes with it: async frames in flight (acknowledged to the client, not yet
to this side by the peer) are counted only when the link dies, in memory. Counting them
durably before every async FUA/FLUSH would cost the connected path an atomic file write
per flush, so instead the first async write of a link marks the file (`async_in_flight`,
once) and the link's end clears the mark. A start that finds the mark set (the process
died while shipping async), or a file it cannot read, knows its count may be low: it
says so (`uncounted`, a reason), in status and in the `discarded` record, until a resync
to the peer makes it moot.

What becomes of it:
- the peer got everything (this side was the resync's source): cleared;
- this side was resynced *from* the peer (it came back after a failover, and its own
  changes since the split were discarded): the ledger becomes the `discarded` record,
  kept (durable) and shown in status until the next discard: the exact count of the
  writes this site acknowledged that the failover lost. It is an upper bound by at most
  the frames in flight at the link's loss that the peer received but whose
  acknowledgement never came back; a lower bound only when `uncounted` says why.

Imports nothing else of pyrepl.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from drorch import slot_file
from drorch.clock import iso_utc as iso_time

log = logging.getLogger("drorch.pyrepl")

TEXT_LIMIT = 600  # characters of one `uncounted` reason kept (a slot holds ~4 KiB)


def _read(path: Path) -> tuple[int, Any]:
    """(the slot file's serial, 0 for the JSON format; the JSON body): OSError or
    ValueError if unreadable."""
    raw = path.read_bytes()
    if not slot_file.is_slot_file(raw):
        return 0, json.loads(raw)
    serial, body = slot_file.decode(raw)
    return serial, json.loads(body)


def read_file(path: Path) -> Any:
    """The ledger file's JSON body, in either format (OSError, ValueError if unreadable)."""
    return _read(path)[1]


def _short(text: str | None) -> str | None:
    if text is None or len(text) <= TEXT_LIMIT:
        return text
    return text[: TEXT_LIMIT - 1] + "…"


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
    uncounted: str | None = None  # why the count may be low (None: it is not)


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
        self.uncounted: str | None = None  # why `open` may be below the truth
        self._async_mark = False  # the file says async frames may be in flight
        self._dirty = False
        self._file = slot_file.SlotFile(path, self._load())

    def _load(self) -> int:
        """Read the file; its slot serial (0: absent, unreadable or the JSON format)."""
        try:
            serial, data = _read(self.path)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:  # never block a start on bookkeeping
            log.warning("%s: unreadable, starting an empty ledger: %s", self.path, exc)
            self._lost_count(f"the ledger file was unreadable at start ({exc})")
            return 0
        if not isinstance(data, dict):
            self._lost_count("the ledger file held no ledger at start")
            return serial
        self.open = _tally(data.get("open"))
        u = data.get("uncounted")
        self.uncounted = None if u is None else _short(str(u))
        d = data.get("discarded")
        if isinstance(d, dict):
            du = d.get("uncounted")
            self.discarded = Discarded(
                _tally(d.get("tally")),
                float(d.get("at", 0.0)),
                str(d.get("generation", "")),
                None if du is None else _short(str(du)),
            )
        if data.get("async_in_flight"):
            self._lost_count(
                "the primary stopped while shipping asynchronously: writes in flight to the"
                " peer then (at most one send queue, max_lag_bytes) are not counted"
            )
        return serial

    def _lost_count(self, why: str) -> None:
        log.warning("%s: the unshipped count may be low: %s", self.path, why)
        self.uncounted = _short(why if self.uncounted is None else f"{self.uncounted}; {why}")
        self._dirty = True

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

    def async_in_flight(self) -> None:
        """An async write is about to be shipped (acknowledged before the peer has it):
        mark the file once per link, so a crash that loses the in-memory frames is known."""
        if not self._async_mark:
            self._async_mark = True
            self.persist(force=True)

    def link_settled(self) -> None:
        """The link ended and its lost frames are counted: no frame is in flight now."""
        if self._async_mark:
            self._async_mark = False
            self._dirty = True

    # ---------------------------------------------------------------- outcomes
    def peer_has_all(self) -> None:
        """This side's resync to the peer finished: nothing of it is only here now."""
        if self.open.writes or self.uncounted is not None:
            self.open = Tally()
            self.uncounted = None
            self.persist(force=True)

    def discard(self, now: float, generation: str) -> Discarded | None:
        """This side was resynced from the peer: what it alone had is gone."""
        if not self.open.writes and self.uncounted is None:
            return None
        self.discarded = Discarded(self.open, now, generation, self.uncounted)
        self.open = Tally()
        self.uncounted = None
        self.persist(force=True)
        return self.discarded

    # ---------------------------------------------------------------- durability
    def persist(self, *, force: bool = False) -> None:
        """Make the ledger durable if it changed (before a FLUSH/FUA is acknowledged)."""
        if not (self._dirty or force):
            return
        body: dict[str, Any] = {"open": asdict(self.open)}
        if self.uncounted is not None:
            body["uncounted"] = self.uncounted
        if self._async_mark:
            body["async_in_flight"] = True
        if self.discarded is not None:
            body["discarded"] = {
                "tally": asdict(self.discarded.tally),
                "at": self.discarded.at,
                "generation": self.discarded.generation,
                "uncounted": self.discarded.uncounted,
            }
        self._file.write(json.dumps(body, sort_keys=True).encode())
        self._dirty = False

    def close(self) -> None:
        self._file.close()

    def status(self) -> dict[str, Any]:
        shown = self.open.writes or self.uncounted is not None
        out: dict[str, Any] = {
            "unshipped": {**_as_dict(self.open), "uncounted": self.uncounted} if shown else None
        }
        d = self.discarded
        out["discarded"] = (
            None
            if d is None
            else {
                **_as_dict(d.tally),
                "discarded_at": iso_time(d.at),
                "generation": d.generation,
                "uncounted": d.uncounted,
            }
        )
        return out


def _as_dict(t: Tally) -> dict[str, Any]:
    return {
        "writes": t.writes,
        "bytes": t.bytes,
        "first": iso_time(t.first),
        "last": iso_time(t.last),
        "seconds": t.seconds,
    }
