"""The write path of a primary: local write, shipping, durability, acknowledgement.

Every write, under the engine lock: the activity log covers its extents (activity.py),
its bitmap bits are set (as activity while shipping, as dirty while not), it is queued
to the peer, and it is written locally, in that order. Queueing and the local write
share the lock, so the local order and the shipping order are the same order and the
secondary, applying frames in sequence, always holds a prefix of this side's history.

With `fencing: resource-only` a sync primary that has no peer to ship to waits (frozen,
bounded) before it records anything, and a write whose peer acknowledgement never came
keeps its own acknowledgement back until the peer is recorded Outdated (freeze.py).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from drorch.replication.base import Role
from drorch.replication.pyrepl import freeze, mode_drain
from drorch.replication.pyrepl.errors import ReadOnly
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
    if engine.role != Role.PRIMARY:
        raise ReadOnly(f"{engine.meta.name} is secondary here; writes are refused")
    freeze.check_stale(engine)
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
    engine.bitmap.mark(offset, length)
    engine.ledger.note(length, engine.clock.now())
    s = engine.session
    engine.ship.not_shipped(regions, ahead=s is not None and s.ahead)


def mark_shipped(engine: Engine, offset: int, length: int) -> None:
    """Bits as activity: set while the write travels, cleared once acknowledged."""
    new = [r for r in engine.bitmap.span(offset, length) if not engine.bitmap.is_set(r)]
    if new:
        engine.ship.travelling(new)
        engine.bitmap.mark(offset, length)


def write_then(
    engine: Engine,
    offset: int,
    data: Payload,
    *,
    fua: bool,
    done: Callable[[], None],
    fail: freeze.Fail | None = None,
) -> None:
    """Write; call `done()` exactly once when the write may be acknowledged. Errors
    raise here (before `done`). In sync mode `done` may run later on the link's
    receiver thread, the moment the peer's acknowledgement arrives: the caller's
    thread is free meanwhile (NBD requests pipeline) and no thread wake-up sits on
    the critical path. A PipePayload is consumed (and released) here, whatever
    happens. `fail(exc)` runs instead of `done` when a held acknowledgement is given up
    (freeze ran out, stale primary)."""
    length = len(data)
    seq = 0
    started = engine.clock.monotonic()
    after = None
    sync = False  # decided under the lock: a mode switch cannot split one write
    try:
        with engine.lock:  # cond's own lock, without Condition's Python-level `with`
            check_write(engine, offset, length)
            session = await_room(engine, length)
            activate(engine, offset, length)
            sync = engine.mode == "sync"
            if session is not None:
                if not sync:
                    engine.ledger.async_in_flight()  # once per link (unshipped.py)
                mark_shipped(engine, offset, length)
                local, ship = tee_or_copy(data) if isinstance(data, PipePayload) else (data, data)
                data = local
                seq = session.enqueue_data(offset, ship, durable=sync)
            else:
                not_shipped(engine, offset, length)
                after = outdate_pending(engine)
            engine.backing.pwrite(offset, data)
            engine.stats["writes"] += 1
    finally:
        release(data)
    if session is not None and seq and sync:

        def replicated() -> None:
            engine.sync_latency.append(engine.clock.monotonic() - started)
            done()

        finish_write(engine, fua, session, seq, replicated, fail, sync=True)
    else:
        finish_write(engine, fua, session, seq, done, fail, after, sync=sync)


def outdate_pending(engine: Engine) -> tuple[PeerSession, int] | None:
    """Pulled ahead, but the peer has not yet acknowledged that it is Outdated: a write
    it does not get waits for that acknowledgement (caller holds cond), so a secondary
    that may be promoted always knows it is behind."""
    s = engine.session
    if s is not None and s.alive and s.ahead and s.outdate_seq > s.acked:
        return s, s.outdate_seq
    return None


def zero(engine: Engine, offset: int, length: int, *, fua: bool, punch: bool = True) -> None:
    """WRITE_ZEROES and TRIM: both sides end up reading zeroes."""
    seq = 0
    after = None
    with engine.cond:
        check_write(engine, offset, length)
        session = await_room(engine, 0)
        activate(engine, offset, length)
        sync = engine.mode == "sync"
        if session is not None:
            if not sync:
                engine.ledger.async_in_flight()
            mark_shipped(engine, offset, length)
            seq = session.enqueue_zero(offset, length, durable=sync)
        else:
            not_shipped(engine, offset, length)
            after = outdate_pending(engine)
        engine.backing.zero(offset, length, punch=punch)
    finished = threading.Event()
    failed: list[Exception] = []

    def fail(exc: Exception) -> None:
        failed.append(exc)
        finished.set()

    finish_write(engine, fua, session, seq, finished.set, fail, after, sync=sync)
    finished.wait()
    if failed:
        raise failed[0]


def finish_write(
    engine: Engine,
    fua: bool,
    session: PeerSession | None,
    seq: int,
    done: Callable[[], None],
    fail: freeze.Fail | None = None,
    after: tuple[PeerSession, int] | None = None,
    *,
    sync: bool,
) -> None:
    """Protocol C: while a peer receives, every write is durable on both sides before
    it is acknowledged. Otherwise (async, or no peer) NBD's rules: durable on FUA. The
    bitmap need not be synced here: the activity log already covers the extent. `after`:
    acknowledge only once the peer acknowledged that frame (see outdate_pending).
    `sync`: the mode when the write was queued (modeswitch.py may change it since)."""
    replicated_sync = session is not None and seq and sync
    if replicated_sync:
        assert session is not None
        session.drain()  # ship it now, then make it durable here meanwhile
        # The frame woke the peer's receiver; where it shares this CPU (the peer on
        # this host, or the loopback stack's work) it runs first, before this thread's
        # fdatasync spends tens of microseconds of CPU submitting the flush. The peer's
        # durable write is the longer leg of a sync write, the local flush the shorter.
        os.sched_yield()
    if replicated_sync or fua:
        engine.backing.sync()
    if fua and session is None:
        with engine.cond:
            engine.ledger.persist()  # the write counted as unshipped, durably, before the ack
    if replicated_sync:
        assert session is not None
        session.when_acked(seq, done, fail)
    elif after is not None:
        after[0].when_acked(after[1], done, fail)
    else:
        done()


def await_room(engine: Engine, length: int) -> PeerSession | None:
    """Async mode: wait while the send queue is over max_lag_bytes (`block`), or stop
    shipping and go ahead of the peer (`pull-ahead`). Caller holds cond."""
    while True:
        session = shipping(engine)
        if session is None:
            if freeze.shipping_or_wait(engine, lambda: shipping(engine)):
                return None  # may go on unreplicated
            continue  # a peer appeared while frozen: ship to it
        if engine.mode == "sync":
            return session
        limit = mode_drain.drain_limit(engine)  # smaller while a switch to sync drains
        if session.lag_bytes == 0 or session.lag_bytes + length <= limit:
            return session
        pull = engine.config.on_congestion == "pull-ahead" and engine.switch is None
        if pull and session.can_pull_ahead():
            session.pull_ahead(
                f"send queue {session.lag_bytes} bytes exceeds max_lag_bytes "
                f"{engine.config.max_lag_bytes}"
            )
            return None
        engine.cond.wait(0.5)


def flush(engine: Engine) -> None:
    """Everything acknowledged before is durable (sync: on both sides). Frozen: waits
    like a write; raises FrozenIO/StalePrimary rather than claim what is not so."""
    with engine.cond:
        freeze.check_stale(engine)
        session = shipping(engine)
        while session is None and not freeze.shipping_or_wait(engine, lambda: shipping(engine)):
            session = shipping(engine)
        seq = session.enqueue_flush() if session is not None else 0
        sync = engine.mode == "sync"
    if session is not None and seq and sync:
        session.drain()
    engine.bitmap.sync()
    engine.backing.sync()
    with engine.cond:
        engine.ledger.persist()  # what the peer lacks is counted durably before the ack
    if session is not None and seq and sync:
        session.wait_acked(seq)  # sync: durable on the peer too; async: local only
        with engine.cond:
            if session.acked < seq:  # the link died first: as good as no peer
                freeze.shipping_or_wait(engine, lambda: None)


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
