"""One live connection to the peer: the ordered send queue, acknowledgements, and the
receiving side's in-order apply.

Every frame the shipping side numbers (`seq` > 0) is applied by the receiver in that
order and acknowledged cumulatively. Writes and resync blocks share one queue, so a
resync block read after a write can never overtake it. All state is guarded by the
engine's lock; the sender thread and the sync writers wait on their own conditions
bound to that same lock.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from drorch.replication.base import ConnState, DiskState, Role
from drorch.replication.pyrepl import freeze, mode_drain, wire
from drorch.replication.pyrepl.condvars import notify_waiters
from drorch.replication.pyrepl.frame_reader import kernel_timeouts, raw_socket
from drorch.replication.pyrepl.handshake import SideView
from drorch.replication.pyrepl.pipes import release
from drorch.replication.pyrepl.receiver import Receiver
from drorch.replication.pyrepl.sending import IOV_MAX, Buffer
from drorch.replication.pyrepl.sending import send_buffers as send_buffers
from drorch.replication.pyrepl.tls_stream import Stream
from drorch.replication.pyrepl.wire import FrameType

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine

log = logging.getLogger("drorch.pyrepl")

PING_INTERVAL = 1.0
# A peer that stays connected (and pings) but does not acknowledge writes, e.g. its disk
# hangs, would stall every sync writer: drop the link after this long (DRBD: ko-count).
ACK_TIMEOUT = 30.0
SEND_BATCH_BYTES = 4 * 1024 * 1024


@dataclass(slots=True)
class InFlight:
    seq: int
    lag_bytes: int
    regions: range
    resync_bytes: int = 0
    on_ack: Callable[[], None] | None = None
    queued_at: float = 0.0
    writes: int = 0  # a client's write (DATA, ZERO): the unshipped ledger counts it if lost


class PeerSession:
    def __init__(self, engine: Engine, sock: Stream, peer: SideView, state: ConnState) -> None:
        self.engine = engine
        self.sock = sock
        self.peer = peer
        self.state = state
        self.lock = engine.lock
        self.send_cond = threading.Condition(self.lock)
        self.ack_cond = threading.Condition(self.lock)
        self.send_lock = threading.Lock()
        self.alive = True
        self.ahead = False
        self.out: deque[tuple[Buffer, ...]] = deque()
        self.inflight: deque[InFlight] = deque()
        self.next_seq = 1
        self.acked = 0
        self.lag_bytes = 0
        self.resync_inflight = 0
        self.peer_epoch_seen = engine.meta.epoch  # the epoch the peer heard from us
        self.outdate_seq = 0  # the OUTDATE frame of a pull-ahead (writes_then waits on it)
        self._callbacks: dict[int, list[tuple[freeze.Done, freeze.Fail | None]]] = {}
        self.receiver = Receiver(self)
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        raw = raw_socket(self.sock)
        if raw is not None:  # before either thread uses it: no poll() per send or receive
            kernel_timeouts(raw, self.engine.config.peer_timeout)
        else:
            self.sock.settimeout(self.engine.config.peer_timeout)
        for target, name in ((self._send_loop, "send"), (self.receiver.run, "recv")):
            t = threading.Thread(target=target, name=f"pyrepl-{name}", daemon=True)
            self._threads.append(t)
            t.start()

    def close(self, reason: str) -> None:
        """Drop the connection (idempotent). Safe from any thread, with or without the lock."""
        with self.lock:
            if not self.alive:
                return
            self.alive = False
            log.warning("%s: connection to peer lost: %s", self.engine.meta.name, reason)
            for frame in self.out:  # never sent: their regions stay dirty for a resync
                for buf in frame:
                    release(buf)
            self.out.clear()
            self.engine.session_lost(self, reason)
            self.send_cond.notify_all()
            self.ack_cond.notify_all()
        self._run_callbacks(None)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def join(self, timeout: float = 5.0) -> None:
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    # ------------------------------------------------------------------ shipping
    @property
    def shipping(self) -> bool:
        return self.engine.role == Role.PRIMARY and self.state in (
            ConnState.CONNECTED,
            ConnState.SYNC_SOURCE,
        )

    def _enqueue(
        self, frame: tuple[Buffer, ...], item: InFlight | None = None, *, wake: bool = True
    ) -> int:
        """Queue a frame. `wake=False` when the caller drains the queue itself (a sync
        writer), so the sender thread does not race it for the socket."""
        self.out.append(frame)
        if item is not None:
            item.queued_at = self.engine.clock.monotonic()
            self.inflight.append(item)
            self.engine.ship.sent(item.regions)
            self.lag_bytes += item.lag_bytes
        if wake:
            self.send_cond.notify()
        return item.seq if item else 0

    def _seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def enqueue_data(self, offset: int, data: Buffer, *, durable: bool) -> int:
        seq, n = self._seq(), len(data)
        flags = wire.FLAG_DURABLE if durable else 0
        head = wire.header(FrameType.DATA, seq=seq, offset=offset, length=n, flags=flags)
        regions = self.engine.bitmap.span(offset, n)
        # a durable (sync) write is drained by its writer at once: no sender wake-up
        item = InFlight(seq, n, regions, writes=1)
        return self._enqueue((head, data), item, wake=not durable)

    def enqueue_zero(self, offset: int, count: int, *, durable: bool) -> int:
        seq = self._seq()
        flags = wire.FLAG_DURABLE if durable else 0
        frame = wire.zero_frame(FrameType.ZERO, seq=seq, offset=offset, count=count, flags=flags)
        span = self.engine.bitmap.span(offset, count)
        return self._enqueue((frame,), InFlight(seq, 0, span, writes=1))

    def enqueue_flush(self) -> int:
        seq = self._seq()
        return self._enqueue((wire.header(FrameType.FLUSH, seq=seq),), InFlight(seq, 0, range(0)))

    def enqueue_resync(self, region: int, data: bytes | None, count: int) -> int:
        seq, offset = self._seq(), region * self.engine.config.region_size
        if data is None:
            frame: tuple[Buffer, ...] = (
                wire.zero_frame(FrameType.RS_ZERO, seq=seq, offset=offset, count=count),
            )
        else:
            frame = (wire.header(FrameType.RS_DATA, seq=seq, offset=offset, length=count), data)
        self.resync_inflight += count
        return self._enqueue(frame, InFlight(seq, 0, range(region, region + 1), count))

    def enqueue_control(
        self, ftype: FrameType, body: dict[str, Any], on_ack: Callable[[], None] | None = None
    ) -> int:
        seq = self._seq()
        return self._enqueue(
            (wire.json_frame(ftype, body, seq=seq),), InFlight(seq, 0, range(0), on_ack=on_ack)
        )

    def send_now(self, frame: bytes) -> None:
        """Unnumbered frames (ACK, VERIFY_RESULT) bypass the queue."""
        with self.send_lock:
            self.sock.sendall(frame)

    def announce_role(self) -> int:
        """Tell the peer our role, in stream order; wait_acked(seq) to know it knows."""
        return self.enqueue_control(FrameType.ROLE, {"role": self.engine.role.value})

    def announce_epoch(self) -> int:
        self.peer_epoch_seen = self.engine.meta.epoch
        return self.enqueue_control(FrameType.EPOCH, {"epoch": self.engine.meta.epoch})

    def when_acked(self, seq: int, callback: freeze.Done, fail: freeze.Fail | None = None) -> None:
        """Run `callback` once `seq` is acknowledged. If the link dies first, the write is
        local only (its regions stay dirty) and freeze.unreplicated decides: acknowledge
        now (dont-care, async), hold until the peer is outdated (resource-only), or
        `fail` (a stale primary). At once if already decided."""
        with self.lock:
            if self.alive and self.acked < seq:
                self._callbacks.setdefault(seq, []).append((callback, fail))
                return
            if self.acked >= seq and self.engine.freeze.stale is None:
                items = [(freeze.Held(callback, fail, 0.0), True)]
            elif self.acked >= seq:
                items = [(freeze.Held(callback, fail, 0.0), False)]
            else:
                items = freeze.unreplicated(self.engine, callback, fail)
        freeze.complete(self.engine, items)

    def _run_callbacks(self, upto: int | None) -> None:
        """Pop (under the lock) and run (outside it) callbacks up to `upto`; None: the
        link died, none of them was acknowledged by the peer (freeze.unreplicated)."""
        with self.lock:
            batch, items = self._pop_callbacks(upto)
        self._complete(batch, items)

    def _pop_callbacks(
        self, upto: int | None
    ) -> tuple[list[tuple[freeze.Done, freeze.Fail | None]], list[tuple[freeze.Held, bool]]]:
        """(acknowledged by the peer: run them, for freeze.complete) (caller holds lock)."""
        callbacks = self._callbacks
        if upto is not None and len(callbacks) == 1 and self.engine.freeze.stale is None:
            (only,) = callbacks  # the sync path: one write waits
            return (callbacks.pop(only), []) if only <= upto else ([], [])
        ready = sorted(s for s in callbacks if upto is None or s <= upto)
        batch = [cb for s in ready for cb in self._callbacks.pop(s)]
        stale = self.engine.freeze.stale is not None
        items: list[tuple[freeze.Held, bool]] = []
        if upto is None or stale:
            for done, fail in batch:
                if stale:
                    items.append((freeze.Held(done, fail, 0.0), False))
                else:
                    items += freeze.unreplicated(self.engine, done, fail)
            batch = []
        return batch, items

    def _complete(
        self,
        batch: list[tuple[freeze.Done, freeze.Fail | None]],
        items: list[tuple[freeze.Held, bool]],
    ) -> None:
        """Outside the lock: NBD replies."""
        if not batch:
            freeze.complete(self.engine, items)
            return
        for cb, _ in batch:  # the connected path: acknowledged by the peer
            try:
                cb()
            except Exception:  # a client that vanished must not take the link down
                log.exception("write completion callback failed")

    def wait_acked(self, seq: int) -> None:
        """Sync writers: block until the peer made `seq` durable or the link died."""
        with self.lock:
            while self.alive and self.acked < seq:
                self.ack_cond.wait(1.0)

    # ------------------------------------------------------------------ pull-ahead
    def can_pull_ahead(self) -> bool:
        return self.state == ConnState.CONNECTED and not self.ahead

    def pull_ahead(self, reason: str) -> None:
        """Stop shipping writes; the peer is Outdated until a resync catches it up."""
        self.ahead = True
        self.update_peer(disk=DiskState.OUTDATED)
        log.warning("%s: pulling ahead of the peer: %s", self.engine.meta.name, reason)
        self.engine.save(generation=self.engine.meta.generation.diverge())
        self.outdate_seq = self.enqueue_control(FrameType.OUTDATE, {"reason": reason})

    # ------------------------------------------------------------------ acks
    def on_ack(self, seq: int) -> None:
        eng = self.engine
        with self.lock:
            if seq <= self.acked or seq >= self.next_seq:
                raise wire.WireError(
                    f"acknowledgement {seq} outside ({self.acked}, {self.next_seq})"
                )
            while self.inflight and self.inflight[0].seq <= seq:
                item = self.inflight.popleft()
                self.lag_bytes -= item.lag_bytes
                for r in eng.ship.acked(item.regions, resync=bool(item.resync_bytes)):
                    eng.bitmap.clear(r)
                if item.resync_bytes:
                    self.resync_inflight -= item.resync_bytes
                    if eng.progress is not None:
                        eng.progress.done_bytes += item.resync_bytes
                if item.on_ack is not None:
                    item.on_ack()
            self.acked = seq
            if self.ahead and not self.inflight:
                self.ahead = False
                eng.start_resync(self, "caught up after pulling ahead")
            if eng.switch is not None:  # an async -> sync switch may flip now
                mode_drain.poll(eng)
            notify_waiters(self.ack_cond)
            notify_waiters(eng.cond)
            # in the same hold of the lock: the replies these writes wait for
            batch, items = self._pop_callbacks(seq) if self._callbacks else ([], [])
        if batch or items:
            self._complete(batch, items)

    # ------------------------------------------------------------------ sender
    def _unacknowledged_for(self) -> float:
        """Seconds the oldest frame in flight has waited for its ack (caller holds lock)."""
        if not self.inflight:
            return 0.0
        return self.engine.clock.monotonic() - self.inflight[0].queued_at

    def _pop_batch(self) -> list[Buffer]:
        """Up to SEND_BATCH_BYTES of queued frames, in order (caller holds the lock)."""
        batch: list[Buffer] = []
        size = 0
        while self.out and size < SEND_BATCH_BYTES and len(batch) < IOV_MAX - 2:
            frame = self.out.popleft()
            batch.extend(frame)
            size += sum(map(len, frame))
        return batch

    def drain(self) -> None:
        """Send everything queued, in queue order, from any thread. The send lock spans
        pop and send, so two drainers can never reorder frames. Lock order: send lock,
        then engine lock (never the reverse). Sync writers call this themselves, which
        saves a thread hop per write; async writers leave it to the sender thread."""
        try:
            with self.send_lock:
                while True:
                    with self.lock:
                        if not self.alive:
                            return
                        batch = self._pop_batch()
                    if not batch:
                        return
                    self.engine.stats["bytes_sent"] += send_buffers(self.sock, batch)
                    if not self.out:  # read without the lock: a frame queued since
                        return  # has a drainer of its own (its sync writer, the sender)
        except OSError as exc:
            self.close(f"send failed: {exc}")

    def _send_loop(self) -> None:
        try:
            while True:
                with self.lock:
                    if self.alive and not self.out:
                        self.send_cond.wait(PING_INTERVAL)
                    if not self.alive:
                        return
                    idle = not self.out
                    stuck = self._unacknowledged_for()
                if stuck > ACK_TIMEOUT:
                    self.close(
                        f"the peer has not acknowledged frame {self.acked + 1} for "
                        f"{stuck:.0f} s (its disk or process hangs)"
                    )
                    return
                if idle:
                    self.send_now(wire.header(FrameType.PING))
                else:
                    self.drain()
        except OSError as exc:
            self.close(f"send failed: {exc}")
        except Exception as exc:  # a bug must cost the link, not leave it half-dead
            log.exception("sender crashed")
            self.close(f"internal error in sender: {exc!r}")

    def update_peer(self, **changes: Any) -> None:
        self.peer = replace(self.peer, **changes)
