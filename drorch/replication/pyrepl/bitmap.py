"""The persistent dirty bitmap: one bit per region that may differ on the peer.

A bit is set before the data write it covers, and the changed bytes of the bitmap file
are written at once (so they survive a crash of the process); `sync()` makes them
durable and runs with every flush. Clearing is lazy: cleared bits are written back by
`writeback()` (after a resync, on disconnect, at shutdown). A bit that is set too long
costs a redundant resync of one region; a bit lost would cost data, so sets are eager.

While connected the same bits act as an activity log: a region with writes in flight
keeps its bit until the peer acknowledged them, so a crash of the primary mid-write is
covered by the next resync.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from drorch.durable import pwrite_all


class DirtyBitmap:
    def __init__(self, path: Path, size: int, region_size: int) -> None:
        if region_size <= 0 or region_size & (region_size - 1):
            raise ValueError(f"region size must be a power of two, got {region_size}")
        self.path = path
        self.region_size = region_size
        self.regions = (size + region_size - 1) // region_size
        nbytes = (self.regions + 7) // 8
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        current = os.fstat(self._fd).st_size
        if current < nbytes:
            os.ftruncate(self._fd, nbytes)
        self._bits = bytearray(os.pread(self._fd, nbytes, 0).ljust(nbytes, b"\0"))
        self._count = sum(b.bit_count() for b in self._bits)
        self._lazy_low = nbytes
        self._lazy_high = 0
        self._unsynced = False

    def close(self) -> None:
        if self._fd >= 0:
            self.writeback()
            os.close(self._fd)
            self._fd = -1

    @property
    def count(self) -> int:
        return self._count

    @property
    def dirty_bytes(self) -> int:
        return self._count * self.region_size

    def span(self, offset: int, length: int) -> range:
        """Regions touched by the byte range [offset, offset+length)."""
        if length <= 0:
            return range(0)
        return range(offset // self.region_size, (offset + length - 1) // self.region_size + 1)

    def is_set(self, region: int) -> bool:
        return bool(self._bits[region >> 3] & (1 << (region & 7)))

    def mark(self, offset: int, length: int) -> bool:
        """Set the bits of a byte range; write changed bitmap bytes through. True if any
        bit was newly set (the caller then syncs before relying on it)."""
        low = high = -1
        for region in self.span(offset, length):
            idx, bit = region >> 3, 1 << (region & 7)
            if not self._bits[idx] & bit:
                self._bits[idx] |= bit
                self._count += 1
                low = idx if low < 0 else low
                high = idx
        if low < 0:
            return False
        pwrite_all(self._fd, self._bits[low : high + 1], low)
        self._unsynced = True
        return True

    def set_region(self, region: int) -> None:
        self.mark(region * self.region_size, self.region_size)

    def clear(self, region: int) -> None:
        idx, bit = region >> 3, 1 << (region & 7)
        if self._bits[idx] & bit:
            self._bits[idx] &= ~bit & 0xFF
            self._count -= 1
            self._lazy_low = min(self._lazy_low, idx)
            self._lazy_high = max(self._lazy_high, idx + 1)

    def clear_all(self) -> None:
        for idx in range(len(self._bits)):
            self._bits[idx] = 0
        self._count = 0
        self._lazy_low, self._lazy_high = 0, len(self._bits)
        self.writeback()
        self._unsynced = True
        self.sync()

    def merge(self, other: bytes) -> int:
        """OR another bitmap in (the peer's, at handshake); returns bits newly set."""
        added = 0
        for idx, byte in enumerate(other[: len(self._bits)]):
            new = byte & ~self._bits[idx] & 0xFF
            if new:
                self._bits[idx] |= new
                added += new.bit_count()
        self._count += added
        if added:
            pwrite_all(self._fd, self._bits, 0)
            self._unsynced = True
            self.sync()
        return added

    def writeback(self) -> None:
        if self._lazy_high > self._lazy_low and self._fd >= 0:
            pwrite_all(self._fd, self._bits[self._lazy_low : self._lazy_high], self._lazy_low)
        self._lazy_low, self._lazy_high = len(self._bits), 0

    def sync(self) -> None:
        """Make set bits durable (a no-op when nothing was set since the last sync)."""
        if self._unsynced:
            self._unsynced = False
            os.fdatasync(self._fd)

    def snapshot(self) -> bytes:
        return bytes(self._bits)

    def set_regions(self) -> Iterator[int]:
        """Set regions in ascending order (a snapshot: safe to clear bits meanwhile)."""
        for idx, byte in enumerate(bytes(self._bits)):
            if byte:
                for bit in range(8):
                    if byte & (1 << bit):
                        yield idx * 8 + bit
