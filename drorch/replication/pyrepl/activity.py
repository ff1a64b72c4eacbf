"""The activity log: which extents a primary may be writing, durable before any write.

The dirty bitmap's bits are written through at once but made durable lazily, so after
a power cut a data block can be on the disk while the bit that says "the peer may not
have this" is not. DRBD closes that gap with its activity log, and so does this: the
volume is cut into extents (4 MiB, or the region size if larger); before the first write
into an extent that is not in the log, the log is rewritten with it and fdatasync'ed.
A primary that stops uncleanly (crash, kill -9, power cut) comes back with the log
still listing its hot extents; they are marked dirty in the bitmap, so the next resync
carries them whichever side turns out to be the source. A clean stop empties the log.

The log holds `slots` extents (DRBD's al-extents, default 1237). The least recently
written one makes room; the caller's `before_evict` first makes every dirty bit durable,
since from then on the bitmap alone has to cover that extent. Slots keep their place
across transactions, so a torn write of the log can only mix old and new slot values:
the old one is an extent still safe to resync, the new one had no data write yet.
"""

from __future__ import annotations

import logging
import os
import struct
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from drorch.durable import pwrite_all

log = logging.getLogger("drorch.pyrepl")

EXTENT_SIZE = 4 * 1024 * 1024
DEFAULT_SLOTS = 1237
MAGIC = b"PYAL"
VERSION = 1
HEADER = struct.Struct(">4sIQI")  # magic, version, extent size, slots
EMPTY = 0xFFFFFFFF


class ActivityLog:
    def __init__(
        self,
        path: Path,
        size: int,
        region_size: int,
        slots: int = DEFAULT_SLOTS,
        sync: Callable[[int], None] = os.fdatasync,
    ) -> None:
        if slots < 1:
            raise ValueError(f"the activity log needs at least 1 slot, got {slots}")
        self.path = path
        self.extent_size = max(EXTENT_SIZE, region_size)
        self.extents = (size + self.extent_size - 1) // self.extent_size
        self.slots = slots
        self._sync = sync
        self._slot_of: OrderedDict[int, int] = OrderedDict()  # extent -> slot, LRU first
        self._table = [EMPTY] * slots
        self.transactions = 0
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.recovered = self._read()

    def _read(self) -> frozenset[int]:
        """Extents listed by the previous run (empty after a clean stop). An unreadable
        or foreign log lists every extent: resyncing too much is safe, too little not."""
        raw = os.pread(self._fd, HEADER.size, 0)
        if not raw:
            return frozenset()
        everything = frozenset(range(self.extents))
        if len(raw) < HEADER.size:
            log.warning("%s: activity log truncated; every extent counts as hot", self.path)
            return everything
        magic, version, extent_size, slots = HEADER.unpack_from(raw)
        if (magic, version, extent_size) != (MAGIC, VERSION, self.extent_size):
            log.warning("%s: activity log not readable here; every extent is hot", self.path)
            return everything
        body = os.pread(self._fd, 4 * slots, HEADER.size)
        if len(body) < 4 * slots:
            log.warning("%s: activity log truncated; every extent counts as hot", self.path)
            return everything
        listed = struct.unpack(f">{slots}I", body)
        return frozenset(e for e in listed if e != EMPTY and e < self.extents)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def active(self) -> int:
        return len(self._slot_of)

    def span(self, offset: int, length: int) -> range:
        if length <= 0:
            return range(0)
        first = offset // self.extent_size
        return range(first, (offset + length - 1) // self.extent_size + 1)

    def extent_range(self, extent: int, size: int) -> tuple[int, int]:
        start = extent * self.extent_size
        return start, min(self.extent_size, size - start)

    def cover(self, offset: int, length: int, before_evict: Callable[[], None]) -> bool:
        """Make sure every extent of the byte range is in the durable log before the
        caller writes there. True when a log transaction (and fdatasync) was needed."""
        wanted = self.span(offset, length)
        if len(wanted) > self.slots:
            raise ValueError(
                f"a write of {length} bytes spans {len(wanted)} extents; the activity "
                f"log holds {self.slots}"
            )
        missing = []
        for extent in wanted:
            if extent in self._slot_of:
                self._slot_of.move_to_end(extent)
            else:
                missing.append(extent)
        if not missing:
            return False
        free = [i for i, e in enumerate(self._table) if e == EMPTY]
        evicting = len(missing) - len(free)
        if evicting > 0:
            before_evict()
            for extent in [e for e in self._slot_of if e not in wanted][:evicting]:
                free.append(self._slot_of.pop(extent))
        for extent, slot in zip(missing, free, strict=False):
            self._table[slot] = extent
            self._slot_of[extent] = slot
        self._write()
        return True

    def clear(self) -> None:
        """Nothing is being written (clean stop, demote): an empty log, durably. The
        caller has made the data and the bitmap durable first."""
        self._slot_of.clear()
        self._table = [EMPTY] * self.slots
        self._write()

    def _write(self) -> None:
        data = HEADER.pack(MAGIC, VERSION, self.extent_size, self.slots)
        data += struct.pack(f">{self.slots}I", *self._table)
        pwrite_all(self._fd, data, 0)
        self._sync(self._fd)
        self.transactions += 1
