"""The sync source's resync loop: ship every dirty region, in the ordered stream.

Regions are read under the engine lock and queued behind any write already queued, so
the target never sees an older copy of a region after a newer one. Regions that are
holes in the source file travel as RS_ZERO (no payload). At most `RESYNC_WINDOW` bytes
are in flight; when the target acknowledged RS_END the source drops its bitmap
generation and both sides are Connected again.
"""

from __future__ import annotations

import base64
import logging
import threading
from typing import TYPE_CHECKING

from drorch.replication.base import ConnState, DiskState, Role
from drorch.replication.pyrepl import freeze, mode_drain
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
    engine.ship.start_resync(engine.bitmap.set_regions())


def region_length(engine: Engine, region: int) -> int:
    rs = engine.config.region_size
    return min(rs, engine.config.size - region * rs)


def start(engine: Engine, session: PeerSession, reason: str) -> None:
    """Begin resyncing the peer from this side (caller holds the lock)."""
    total = sum(region_length(engine, r) for r in engine.ship.queued())
    engine.progress = ResyncProgress(total, engine.clock.monotonic())
    session.state = ConnState.SYNC_SOURCE
    session.update_peer(disk=DiskState.INCONSISTENT)
    log.info(
        "%s: resync to peer: %d bytes in %d regions (%s)",
        engine.meta.name,
        total,
        engine.ship.pending,
        reason,
    )
    body: dict[str, object] = {"total_bytes": total, "reason": reason}
    if engine.ship.pending == engine.bitmap.count:  # the bitmap lists exactly what will come
        body["regions"] = base64.b64encode(engine.bitmap.snapshot()).decode()

    def peer_inconsistent() -> None:
        """The target made Inconsistent durable: it cannot be promoted without a
        data-loss acknowledgement, so writes held by a freeze may be acknowledged."""
        if session.alive:
            freeze.complete_later(
                engine, freeze.peer_outdated(engine, "the peer returned and resyncs from here")
            )

    session.enqueue_control(FrameType.RS_BEGIN, body, on_ack=peer_inconsistent)
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
            region = engine.ship.next_region()
            if region is None:
                break
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
            engine.ledger.peer_has_all()
            session.state = ConnState.CONNECTED
            session.update_peer(disk=DiskState.UP_TO_DATE, generation=generation)
            if engine.progress is not None:
                engine.progress.done_bytes = engine.progress.total_bytes
                engine.progress.finished = engine.clock.monotonic()
            engine.last_error = None
            engine.bitmap.writeback()
            if engine.meta.peer_outdated:
                freeze.peer_current(engine)  # guarded again: a later link loss freezes
                if engine.fence_hook is not None and engine.role == Role.PRIMARY:
                    engine.fence_hook.unfence()
            log.info("%s: resync finished", engine.meta.name)
            mode_drain.poll(engine)  # a switch to sync waits for the resync

        session.enqueue_control(
            FrameType.RS_END, {"generation": generation.as_dict()}, on_ack=finished
        )
