"""The write path of a primary: local write, shipping, durability, acknowledgement.

Every write, under the engine lock: the activity log covers its extents (activity.py),
its bitmap bits are set (as activity while shipping, as dirty while not), it is queued
to the peer, and it is written locally, in that order. Queueing and the local write
share the lock, so the local order and the shipping order are the same order and the
secondary, applying frames in sequence, always holds a prefix of this side's history.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from drorch.replication.base import Role
from drorch.replication.pyrepl.pipes import Payload, PipePayload, release, tee_or_copy

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine
    from drorch.replication.pyrepl.session import PeerSession

log = logging.getLogger("drorch.pyrepl")


def shipping(engine: Engine) -> PeerSession | None:
    s = engine.session
    if s is not None and s.alive and s.shipping and not s.ahead:
        return s
    return None


def check_write(engine: Engine, offset: int, length: int) -> None:
    from drorch.replication.pyrepl.engine import ReadOnly

    if engine.role != Role.PRIMARY:
        raise ReadOnly(f"{engine.meta.name} is secondary here; writes are refused")
    engine.backing.check()  # Diskless: refused before anything is recorded
    if offset < 0 or offset + length > engine.config.size:
        raise ValueError(f"{offset}+{length} is beyond the end of the volume")


def activate(engine: Engine, offset: int, length: int) -> None:
    """The activity log lists the range's extents, durably, before the write (holds lock).
    Evicting an extent hands its coverage to the bitmap: make the bitmap durable first."""
    engine.activity.cover(offset, length, before_evict=engine.bitmap.sync)


def not_shipped(engine: Engine, offset: int, length: int) -> None:
    """Record a write the peer will not see now: new generation, dirty bits."""
    if engine.meta.generation.bitmap == "0":
        engine.save(generation=engine.meta.generation.diverge())
        log.info(
            "%s: peer not receiving, new data generation %s",
            engine.meta.name,
            engine.meta.generation.current,
        )
    regions = engine.bitmap.span(offset, length)
    engine.hot.difference_update(regions)
    engine.bitmap.mark(offset, length)
    s = engine.session
    if s is not None and s.ahead:
        for r in regions:
            if r not in engine.todo_set:
                engine.todo_set.add(r)
                engine.todo.append(r)


def mark_shipped(engine: Engine, offset: int, length: int) -> None:
    """Bits as activity: set while the write travels, cleared once acknowledged."""
    new = False
    for r in engine.bitmap.span(offset, length):
        if not engine.bitmap.is_set(r):
            engine.hot.add(r)
            new = True
    if new:
        engine.bitmap.mark(offset, length)


def write_then(
    engine: Engine, offset: int, data: Payload, *, fua: bool, done: Callable[[], None]
) -> None:
    """Write; call `done()` exactly once when the write may be acknowledged. Errors
    raise here (before `done`). In sync mode `done` may run later on the link's
    receiver thread, the moment the peer's acknowledgement arrives: the caller's
    thread is free meanwhile (NBD requests pipeline) and no thread wake-up sits on
    the critical path. A PipePayload is consumed (and released) here, whatever
    happens."""
    length = len(data)
    seq = 0
    started = engine.clock.monotonic()
    try:
        with engine.cond:
            check_write(engine, offset, length)
            session = await_room(engine, length)
            activate(engine, offset, length)
            if session is not None:
                mark_shipped(engine, offset, length)
                local, ship = tee_or_copy(data) if isinstance(data, PipePayload) else (data, data)
                data = local
                seq = session.enqueue_data(offset, ship, durable=engine.mode == "sync")
            else:
                not_shipped(engine, offset, length)
            engine.backing.pwrite(offset, data)
            engine.stats["writes"] += 1
    finally:
        release(data)
    if session is not None and seq and engine.mode == "sync":

        def replicated() -> None:
            engine.sync_latency.append(engine.clock.monotonic() - started)
            done()

        finish_write(engine, fua, session, seq, replicated)
    else:
        finish_write(engine, fua, session, seq, done)


def zero(engine: Engine, offset: int, length: int, *, fua: bool, punch: bool = True) -> None:
    """WRITE_ZEROES and TRIM: both sides end up reading zeroes."""
    seq = 0
    with engine.cond:
        check_write(engine, offset, length)
        session = await_room(engine, 0)
        activate(engine, offset, length)
        if session is not None:
            mark_shipped(engine, offset, length)
            seq = session.enqueue_zero(offset, length, durable=engine.mode == "sync")
        else:
            not_shipped(engine, offset, length)
        engine.backing.zero(offset, length, punch=punch)
    finished = threading.Event()
    finish_write(engine, fua, session, seq, finished.set)
    finished.wait()


def finish_write(
    engine: Engine,
    fua: bool,
    session: PeerSession | None,
    seq: int,
    done: Callable[[], None],
) -> None:
    """Protocol C: while a peer receives, every write is durable on both sides before
    it is acknowledged. Otherwise (async, or no peer) NBD's rules: durable on FUA. The
    bitmap need not be synced here: the activity log already covers the extent."""
    replicated_sync = session is not None and seq and engine.mode == "sync"
    if replicated_sync:
        assert session is not None
        session.drain()  # ship it now, then make it durable here meanwhile
    if replicated_sync or fua:
        engine.backing.sync()
    if replicated_sync:
        assert session is not None
        session.when_acked(seq, done)
    else:
        done()


def await_room(engine: Engine, length: int) -> PeerSession | None:
    """Async mode: wait while the send queue is over max_lag_bytes (`block`), or stop
    shipping and go ahead of the peer (`pull-ahead`). Caller holds cond."""
    while True:
        session = shipping(engine)
        if session is None or engine.mode == "sync":
            return session
        if session.lag_bytes == 0 or session.lag_bytes + length <= engine.config.max_lag_bytes:
            return session
        if engine.config.on_congestion == "pull-ahead" and session.can_pull_ahead():
            session.pull_ahead(
                f"send queue {session.lag_bytes} bytes exceeds max_lag_bytes "
                f"{engine.config.max_lag_bytes}"
            )
            return None
        engine.cond.wait(0.5)


def flush(engine: Engine) -> None:
    with engine.cond:
        session = shipping(engine)
        seq = session.enqueue_flush() if session is not None else 0
    if session is not None and seq and engine.mode == "sync":
        session.drain()
    engine.bitmap.sync()
    engine.backing.sync()
    if session is not None and seq and engine.mode == "sync":
        session.wait_acked(seq)  # sync: durable on the peer too; async: local only


def flush_local(engine: Engine) -> None:
    with engine.cond:
        engine.bitmap.writeback()
    engine.bitmap.sync()
    if engine.backing.detached is None:  # a Diskless side has nothing to flush
        engine.backing.sync()


def quiesce_activity(engine: Engine) -> None:
    """No more writes here (demote, clean stop): data and bitmap durable, then an empty
    activity log, so the next start does not resync what is known to be in sync."""
    flush_local(engine)
    with engine.cond:
        if engine.role != Role.PRIMARY:
            engine.activity.clear()
