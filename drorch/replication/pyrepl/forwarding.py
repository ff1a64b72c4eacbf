"""Forwarding between two primaries (see dual.py for the design).

The second primary's writes and zero-ranges travel to the first (FWD_DATA / FWD_ZERO,
numbered in stream order but never ACKed); the first applies each through its normal
write path on its `Applier` thread and answers FWD_DONE (done, failed, or retry: it had
demoted) after the DATA frame it shipped back. The second's client is answered then.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drorch.replication.base import ReplicationError, Role
from drorch.replication.pyrepl import wire
from drorch.replication.pyrepl.errors import ReadOnly, WireError
from drorch.replication.pyrepl.pipes import Payload, PipePayload, release
from drorch.replication.pyrepl.wire import FrameType, Header

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine
    from drorch.replication.pyrepl.session import PeerSession

log = logging.getLogger("drorch.pyrepl")

DONE, FAILED, RETRY = 0, 1, 2  # FWD_DONE outcomes (the frame's flags)
FLAG_FUA, FLAG_PUNCH = 1, 2  # FWD_DATA / FWD_ZERO flags
FORWARD_WINDOW = 8 * 1024 * 1024  # bytes forwarded and not yet answered
FORWARD_TIMEOUT = 30.0  # as the link's ACK_TIMEOUT
FORWARDED = frozenset({FrameType.FWD_DATA, FrameType.FWD_ZERO, FrameType.FWD_DONE})
Done = Callable[[], None]
Fail = Callable[[Exception], None]


class ForwardFailed(ReplicationError):
    """A second primary's write that is not acknowledged (answered with EIO)."""


@dataclass
class Forward:
    kind: FrameType
    offset: int
    data: bytes | None
    count: int
    fua: bool
    punch: bool
    done: Done
    fail: Fail
    since: float
    cost: int


def link_lost(engine: Engine, reason: str) -> None:
    """The session died (lock held): a second primary is orphaned, its forwards fail."""
    d = engine.dual
    d.peer_allows = d.peer_second = False
    if d.applier is not None:
        d.applier.stop()
        d.applier = None
    if d.second and engine.role == Role.PRIMARY:
        d.orphaned = (
            f"the link to the first primary dropped ({reason}); writes here fail with EIO "
            "until this side is demoted"
        )
        log.error("%s: second primary orphaned: %s", engine.meta.name, reason)
    _fail_pending(engine, d.orphaned or f"link lost: {reason}")


def _fail_pending(engine: Engine, why: str) -> None:
    d = engine.dual
    items = list(d.pending.values())
    d.pending.clear()
    d.pending_bytes = 0
    engine.cond.notify_all()
    if items:
        threading.Thread(target=_fail_all, args=(items, why), daemon=True).start()


def _fail_all(items: list[Forward], why: str) -> None:
    for item in items:
        _call(item.fail, ForwardFailed(f"not acknowledged: {why}"))


def _call(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # a client that vanished must not take the link down
        log.exception("forwarded write completion failed")


# ---------------------------------------------------------------------- second primary
def accepts(engine: Engine, ftype: FrameType) -> bool:
    """May a primary receive this numbered frame? Forwards and their answers, DUAL,
    and (at a second primary) the first primary's writes."""
    if ftype in FORWARDED or ftype == FrameType.DUAL:
        return True
    return engine.dual.second and ftype in (FrameType.DATA, FrameType.ZERO)


def active(engine: Engine) -> bool:
    """Writes here go to the first primary (or fail: orphaned)."""
    return engine.role == Role.PRIMARY and (engine.dual.second or engine.dual.orphaned is not None)


def forward(
    engine: Engine,
    kind: FrameType,
    offset: int,
    data: Payload | None,
    count: int,
    *,
    fua: bool,
    punch: bool = True,
    done: Done,
    fail: Fail | None,
) -> None:
    """Forward one write/zero to the first primary. `done()` runs once it is durable on
    both sides; `fail(exc)` if it never will be. Without `fail` this blocks until the
    answer and raises instead. Refusals (bounds, orphaned) raise at once."""
    body: bytes | None = None
    try:
        if data is not None:
            body = data.read_all() if isinstance(data, PipePayload) else bytes(data)
    finally:
        release(data)
    if offset < 0 or offset + count > engine.config.size:
        raise ValueError(f"{offset}+{count} is beyond the end of the volume")
    answer: list[Exception | None] = []
    finished = threading.Event()
    done_: Done
    fail_: Fail
    if fail is None:

        def ok() -> None:
            answer.append(None)
            finished.set()

        def failed(exc: Exception) -> None:
            answer.append(exc)
            finished.set()

        done_, fail_ = ok, failed
    else:
        done_, fail_ = done, fail
    session = _queue(engine, kind, offset, body, count, fua, punch, done_, fail_)
    session.drain()
    if fail is not None:
        return
    # bounded: housekeeping drops the link (failing this) after FORWARD_TIMEOUT
    if not finished.wait(FORWARD_TIMEOUT + 5.0):
        raise ForwardFailed(f"{engine.meta.name}: the first primary did not answer")
    if answer[0] is not None:
        raise answer[0]
    done()


def _queue(
    engine: Engine,
    kind: FrameType,
    offset: int,
    body: bytes | None,
    count: int,
    fua: bool,
    punch: bool,
    done: Done,
    fail: Fail,
) -> PeerSession:
    cost = len(body) if body is not None else 0
    with engine.cond:
        d = engine.dual
        deadline = engine.clock.monotonic() + FORWARD_TIMEOUT
        while True:
            if engine.role != Role.PRIMARY:
                raise ReadOnly(f"{engine.meta.name} is secondary here; writes are refused")
            if d.orphaned is not None:
                raise ForwardFailed(f"{engine.meta.name}: {d.orphaned}")
            s = engine.session
            if s is None or not s.alive:
                raise ForwardFailed(f"{engine.meta.name}: no link to the first primary")
            if not d.pending or d.pending_bytes + cost <= FORWARD_WINDOW:
                break
            if engine.clock.monotonic() > deadline:
                raise ForwardFailed(
                    f"{engine.meta.name}: the first primary answers no forwarded write"
                )
            engine.cond.wait(0.5)
        seq = s._seq()
        flags = (FLAG_FUA if fua else 0) | (FLAG_PUNCH if punch else 0)
        if kind == FrameType.FWD_DATA:
            assert body is not None
            head = wire.header(kind, seq=seq, offset=offset, length=len(body), flags=flags)
            frame: tuple[bytes, ...] = (head, body)
        else:
            frame = (wire.zero_frame(kind, seq=seq, offset=offset, count=count, flags=flags),)
        now = engine.clock.monotonic()
        d.pending[seq] = Forward(kind, offset, body, count, fua, punch, done, fail, now, cost)
        d.pending_bytes += cost
        d.forwarded += 1
        s._enqueue(frame, None, wake=False)  # answered by FWD_DONE, not by ACK
    return s


def on_done(session: PeerSession, head: Header) -> None:
    """FWD_DONE from the first primary (receiver thread)."""
    eng = session.engine
    with eng.cond:
        item = eng.dual.pending.pop(head.offset, None)
        if item is None:
            raise WireError(f"FWD_DONE for {head.offset}, which was not forwarded")
        eng.dual.pending_bytes -= item.cost
        eng.cond.notify_all()
    if head.flags == DONE:
        _call(item.done)
    elif head.flags == RETRY:  # the first primary demoted first: apply it here
        with eng.cond:
            eng.dual.retried += 1
        threading.Thread(target=_retry, args=(eng, item), daemon=True).start()
    else:
        _call(item.fail, ForwardFailed("the first primary could not write it (see its log)"))


def _retry(engine: Engine, item: Forward) -> None:
    try:
        if item.kind == FrameType.FWD_DATA:
            assert item.data is not None
            finished = threading.Event()
            failed: list[Exception] = []

            def fail(exc: Exception) -> None:
                failed.append(exc)
                finished.set()

            engine.write_then(item.offset, item.data, fua=item.fua, done=finished.set, fail=fail)
            finished.wait()
            if failed:
                raise failed[0]
        else:
            engine.zero(item.offset, item.count, fua=item.fua, punch=item.punch)
    except (ReplicationError, OSError, ValueError) as exc:
        _call(item.fail, exc)
        return
    _call(item.done)


def flush(engine: Engine) -> None:
    """Flush at a second primary: every write acknowledged here is durable on both disks
    already (sync, forwarded); only this side's own state needs flushing."""
    with engine.cond:
        if engine.dual.orphaned is not None:
            raise ForwardFailed(f"{engine.meta.name}: {engine.dual.orphaned}")
    engine.flush_local()


def housekeeping(engine: Engine) -> None:
    """Drop the link when the first primary leaves a forwarded write unanswered."""
    with engine.cond:
        d, s = engine.dual, engine.session
        if not d.pending or s is None or not s.alive:
            return
        oldest = min(f.since for f in d.pending.values())
        stuck = engine.clock.monotonic() - oldest
    if stuck > FORWARD_TIMEOUT:
        s.close(f"the first primary has not answered a forwarded write for {stuck:.0f} s")


# ---------------------------------------------------------------------- first primary
def on_forward(session: PeerSession, head: Header, payload: memoryview) -> None:
    """FWD_DATA / FWD_ZERO from the second primary (receiver thread): queue it for the
    applier, which runs it through this side's write path in arrival order."""
    eng = session.engine
    count = wire.zero_count(head, payload) if head.type == FrameType.FWD_ZERO else head.length
    if head.offset + count > eng.config.size:
        raise WireError(f"{head.type.name} at {head.offset}+{count} is past the volume end")
    data = bytes(payload) if head.type == FrameType.FWD_DATA else None
    with eng.cond:
        d = eng.dual
        if d.applier is None:
            d.applier = Applier(eng, session)
        d.applier.put((head, data, count))


class Applier:
    """The first primary's worker for forwarded writes (one per session). It never
    runs on the receiver thread, so the receiver keeps reading while a write waits for
    its acknowledgement, and the two link directions cannot block each other."""

    def __init__(self, engine: Engine, session: PeerSession) -> None:
        self.engine = engine
        self.session = session
        self.queue: deque[tuple[Header, bytes | None, int]] = deque()
        self.cond = threading.Condition(engine.lock)
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="pyrepl-fwd", daemon=True)
        self.thread.start()

    def put(self, item: tuple[Header, bytes | None, int]) -> None:
        self.queue.append(item)
        self.cond.notify()

    def stop(self) -> None:
        self.stopped = True
        self.queue.clear()
        self.cond.notify_all()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.stopped:
                    self.cond.wait(1.0)
                if self.stopped:
                    return
                head, data, count = self.queue.popleft()
            self._apply(head, data, count)

    def _apply(self, head: Header, data: bytes | None, count: int) -> None:
        seq, eng = head.seq, self.engine
        fua = bool(head.flags & FLAG_FUA)
        try:
            if head.type == FrameType.FWD_DATA:
                assert data is not None
                eng.write_then(
                    head.offset,
                    data,
                    fua=fua,
                    done=lambda: self.answer(seq, DONE),
                    fail=lambda exc: self._failed(seq, exc),
                )
            else:
                punch = bool(head.flags & FLAG_PUNCH)
                eng.zero(head.offset, count, fua=fua, punch=punch)
                self.answer(seq, DONE)
        except ReadOnly:
            self.answer(seq, RETRY)
        except (ReplicationError, OSError, ValueError) as exc:
            log.error("%s: forwarded %s failed: %s", eng.meta.name, head.type.name, exc)
            self.answer(seq, FAILED)

    def _failed(self, seq: int, exc: Exception) -> None:
        log.error("%s: forwarded write not acknowledged: %s", self.engine.meta.name, exc)
        self.answer(seq, FAILED)

    def answer(self, seq: int, outcome: int) -> None:
        """FWD_DONE, queued in stream order after the DATA it answers for."""
        s = self.session
        with self.engine.cond:
            if not s.alive:
                return
            frame = wire.header(FrameType.FWD_DONE, seq=s._seq(), offset=seq, flags=outcome)
            s._enqueue((frame,), None, wake=True)
