"""The sync source's resync loop: ship every dirty region, in the ordered stream.

Regions are read under the engine lock and queued behind any write already queued, so
the target never sees an older copy of a region after a newer one. Regions that are
holes in the source file travel as RS_ZERO (no payload). At most `RESYNC_WINDOW` bytes
are in flight; when the target acknowledged RS_END the source drops its bitmap
generation and both sides are Connected again.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from drorch.replication.base import ConnState, DiskState
from drorch.replication.pyrepl.progress import ResyncProgress
from drorch.replication.pyrepl.wire import FrameType

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine
    from drorch.replication.pyrepl.session import PeerSession

log = logging.getLogger("drorch.pyrepl")

RESYNC_WINDOW = 8 * 1024 * 1024


def queue_regions(engine: Engine, *, full: bool) -> None:
    """Fill the resync work list from the bitmap (every region when `full`). Holds lock."""
    if full:
        engine.bitmap.mark(0, engine.config.size)
        engine.bitmap.sync()
    engine.hot.clear()
    engine.todo.clear()
    engine.todo_set.clear()
    for region in engine.bitmap.set_regions():
        engine.todo.append(region)
        engine.todo_set.add(region)


def region_length(engine: Engine, region: int) -> int:
    rs = engine.config.region_size
    return min(rs, engine.config.size - region * rs)


def start(engine: Engine, session: PeerSession, reason: str) -> None:
    """Begin resyncing the peer from this side (caller holds the lock)."""
    total = sum(region_length(engine, r) for r in engine.todo)
    engine.progress = ResyncProgress(total, engine.clock.monotonic())
    session.state = ConnState.SYNC_SOURCE
    session.update_peer(disk=DiskState.INCONSISTENT)
    log.info(
        "%s: resync to peer: %d bytes in %d regions (%s)",
        engine.meta.name,
        total,
        len(engine.todo),
        reason,
    )
    session.enqueue_control(FrameType.RS_BEGIN, {"total_bytes": total, "reason": reason})
    t = threading.Thread(target=_run, args=(engine, session), name="pyrepl-resync", daemon=True)
    t.start()


def _run(engine: Engine, session: PeerSession) -> None:
    try:
        _ship_regions(engine, session)
    except OSError as exc:
        session.close(f"resync read failed: {exc}")


def _pace(engine: Engine, session: PeerSession, started: float, queued: int) -> None:
    """Keep the resync at or below `resync_rate` bytes/s (0: unlimited), so a long
    resync leaves the link to application writes, as DRBD's resync rate does."""
    rate = engine.config.resync_rate
    if rate <= 0:
        return
    while session.alive:
        ahead = queued / rate - (engine.clock.monotonic() - started)
        if ahead <= 0:
            return
        engine.clock.sleep(min(ahead, 0.2))


def _ship_regions(engine: Engine, session: PeerSession) -> None:
    started, queued = engine.clock.monotonic(), 0
    while True:
        _pace(engine, session, started, queued)
        with engine.lock:  # one region per lock hold: writers interleave freely
            while session.alive and session.resync_inflight >= RESYNC_WINDOW:
                engine.cond.wait(1.0)
            if not session.alive:
                return
            if not engine.todo:
                break
            region = engine.todo.popleft()
            engine.todo_set.discard(region)
            offset = region * engine.config.region_size
            count = region_length(engine, region)
            hole = engine.backing.is_hole(offset, count)
            data = None if hole else engine.backing.pread(offset, count)
            session.enqueue_resync(region, data, count)
            queued += count if data is not None else 0  # holes cost the link nothing
            if engine.progress is not None:
                engine.progress.regions_sent += 1
                if data is not None:
                    engine.progress.sent_bytes += count
                    engine.stats["resync_bytes_sent"] += count
    with engine.lock:
        generation = engine.meta.generation

        def finished() -> None:
            engine.save(generation=engine.meta.generation.resync_finished())
            session.state = ConnState.CONNECTED
            session.update_peer(disk=DiskState.UP_TO_DATE, generation=generation)
            if engine.progress is not None:
                engine.progress.done_bytes = engine.progress.total_bytes
                engine.progress.finished = engine.clock.monotonic()
            engine.last_error = None
            engine.bitmap.writeback()
            log.info("%s: resync finished", engine.meta.name)

        session.enqueue_control(
            FrameType.RS_END, {"generation": generation.as_dict()}, on_ack=finished
        )
