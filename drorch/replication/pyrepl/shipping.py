"""What a primary's shipping knows about regions beyond the dirty bitmap, in one place.

The write path (writes.py), the link (session.py), the resync (resync.py), verify and
the engine all change this state; they do it only through these methods, always under
the engine's lock. It imports nothing else of pyrepl: the bitmap stays the caller's, and
a method that lets bits be set or cleared returns the regions, the caller changes the
bitmap.

Invariants (`check()` asserts them; the tests drive every method):

1. `todo` and `todo_set` hold the same regions, each once: the resync work list, in
   the order it will be sent.
2. Every count in `inflight` is positive: the frames sent to the peer and not yet
   acknowledged that touch the region.
3. A region in `hot` has its bitmap bit set *only as activity*: it differs from the
   peer by writes still travelling at most, so a crash must resync it but the peer's
   acknowledgement clears it. A region known to differ (written while not shipping,
   found different by verify, queued for resync) is never in `hot`.
4. No region is both in `hot` and in `todo`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator


class ShippingState:
    def __init__(self) -> None:
        self.hot: set[int] = set()
        self.inflight: dict[int, int] = {}
        self.todo: deque[int] = deque()
        self.todo_set: set[int] = set()

    # ---------------------------------------------------------------- write path
    def travelling(self, regions: Iterable[int]) -> None:
        """A write to a connected peer set these regions' bits (they were clear): the
        bits are activity only, until the peer acknowledges."""
        self.hot.update(r for r in regions if r not in self.todo_set)

    def not_shipped(self, regions: Iterable[int], *, ahead: bool) -> None:
        """A write the peer will not get now: its regions really differ. Ahead of the
        peer (pull-ahead) they also join the resync work list."""
        regions = list(regions)
        self.hot.difference_update(regions)
        if ahead:
            self.queue(regions)

    def differs(self, region: int) -> None:
        """Verify found the region different from the peer's: not just activity."""
        self.hot.discard(region)

    # ---------------------------------------------------------------- the link
    def sent(self, regions: Iterable[int]) -> None:
        for r in regions:
            self.inflight[r] = self.inflight.get(r, 0) + 1

    def acked(self, regions: Iterable[int], *, resync: bool) -> list[int]:
        """The peer acknowledged a frame touching `regions`. For a resync frame, the
        regions not queued again and with nothing else in flight are in sync: returned,
        their bits may be cleared; those still in flight become activity."""
        clear: list[int] = []
        for r in regions:
            left = self.inflight.get(r, 0) - 1
            if left > 0:
                self.inflight[r] = left
            else:
                self.inflight.pop(r, None)
            if resync and r not in self.todo_set:
                if left > 0:
                    self.hot.add(r)
                else:
                    clear.append(r)
        return clear

    def settled(self) -> list[int]:
        """Activity regions with nothing in flight any more: in sync. Removed from
        `hot` and returned (the caller clears their bits)."""
        done = [r for r in self.hot if not self.inflight.get(r)]
        self.hot.difference_update(done)
        return done

    def lost(self) -> tuple[list[int], list[int]]:
        """The link died: (regions with frames in flight: their bits must be set,
        activity regions with nothing in flight: their bits may be cleared). Everything
        is forgotten; the next connection starts from the bitmap."""
        in_flight = list(self.inflight)
        clear = [r for r in self.hot if not self.inflight.get(r)]
        self.hot.clear()
        self.inflight.clear()
        self.todo.clear()
        self.todo_set.clear()
        return in_flight, clear

    # ---------------------------------------------------------------- resync
    def start_resync(self, regions: Iterable[int]) -> None:
        """The work list becomes `regions` (the bitmap's set regions), nothing is hot."""
        self.hot.clear()
        self.todo.clear()
        self.todo_set.clear()
        self.queue(regions)

    def queue(self, regions: Iterable[int]) -> None:
        for r in regions:
            if r not in self.todo_set:
                self.todo_set.add(r)
                self.todo.append(r)
                self.hot.discard(r)

    def next_region(self) -> int | None:
        if not self.todo:
            return None
        region = self.todo.popleft()
        self.todo_set.discard(region)
        return region

    @property
    def pending(self) -> int:
        """Regions still to resync."""
        return len(self.todo)

    def queued(self) -> Iterator[int]:
        return iter(self.todo)

    @property
    def activity_regions(self) -> int:
        """Bits set only as activity (not out of sync)."""
        return len(self.hot)

    def check(self) -> None:
        """Assert the invariants of the module docstring."""
        assert len(self.todo) == len(self.todo_set) and set(self.todo) == self.todo_set
        assert all(n > 0 for n in self.inflight.values())
        assert not self.hot & self.todo_set
