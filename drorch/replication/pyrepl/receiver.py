"""The receiving half of a peer session: read frames and apply them strictly in order.

A secondary applies DATA/ZERO/RS_* frames in sequence and acknowledges each one after
it is written (and made durable when the frame asks for it), so what it holds is always
a prefix of what the primary wrote. Anything out of order or out of place drops the
connection; nothing is applied from a frame that failed to parse.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import logging
import socket
import sys
import termios
from typing import TYPE_CHECKING, Any

from drorch.replication.base import ConnState, DiskState, Role
from drorch.replication.pyrepl import dual, forwarding, freeze, modeswitch, wire
from drorch.replication.pyrepl.frame_reader import READ_AHEAD, FrameReader
from drorch.replication.pyrepl.meta import Generation
from drorch.replication.pyrepl.progress import ResyncProgress
from drorch.replication.pyrepl.splice import MIN_SPLICE, FileSideError, Splicer
from drorch.replication.pyrepl.storage import DiskFailed
from drorch.replication.pyrepl.tls_stream import Stream
from drorch.replication.pyrepl.wire import FrameType, Header, WireError

if TYPE_CHECKING:
    from drorch.replication.pyrepl.session import PeerSession

log = logging.getLogger("drorch.pyrepl")

PEER_SILENCE_TIMEOUT = 6.0
ACK_BATCH = 32
_FIONREAD_BUF = bytes(4)
SEQUENCED = frozenset(
    {
        FrameType.DATA,
        FrameType.ZERO,
        FrameType.FLUSH,
        FrameType.RS_BEGIN,
        FrameType.RS_DATA,
        FrameType.RS_ZERO,
        FrameType.RS_END,
        FrameType.OUTDATE,
        FrameType.ROLE,
        FrameType.EPOCH,
        FrameType.DUAL,
        FrameType.MODE,
    }
)
ROLE_FRAMES = frozenset(
    {FrameType.FLUSH, FrameType.ROLE, FrameType.EPOCH, FrameType.DUAL, FrameType.MODE}
)
SPLICED = frozenset({FrameType.DATA, FrameType.RS_DATA})
ZEROS = frozenset({FrameType.ZERO, FrameType.RS_ZERO})
WRITES = SPLICED | ZEROS


def recv_exact(sock: Stream, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise EOFError("peer closed the connection")
        got += k
    return buf


class Receiver:
    def __init__(self, session: PeerSession) -> None:
        self.session = session
        self.engine = session.engine
        self.last_seq = 0
        self._deferred = 0
        self._buf = bytearray(0)  # payloads larger than the reader's buffer
        self.reader = FrameReader(session.sock)
        self._splicer = Splicer() if isinstance(session.sock, socket.socket) else None

    def run(self) -> None:
        s = self.session
        reason = "receiver stopped"
        try:
            reader, stats = self.reader, self.engine.stats
            while s.alive:
                head = wire.parse_header(reader.take(wire.HEADER.size))
                stats["frames_received"] += 1
                if (
                    head.type is FrameType.DATA
                    and head.flags & wire.FLAG_DURABLE
                    and head.length <= READ_AHEAD
                    and self.engine.role != Role.PRIMARY
                ):
                    self._durable_write(head)
                    continue
                if head.type is FrameType.ACK and not head.length:  # the sync path's other half
                    s.on_ack(head.seq)
                    continue
                splice = self._splicer is not None and head.type in SPLICED
                if splice and head.length >= MIN_SPLICE:
                    self._spliced(head)
                    continue
                self.dispatch(head, self._recv_payload(head.length))
        except TimeoutError:
            reason = f"peer silent for {self.engine.config.peer_timeout:g} s"
        except EOFError as exc:
            reason = str(exc)
        except WireError as exc:
            reason = f"protocol error: {exc}"
        except DiskFailed as exc:
            reason = f"local disk detached: {exc}"
        except OSError as exc:
            reason = f"link error: {exc}"
        except Exception as exc:  # a bug must cost the link, not leave it half-dead
            log.exception("receiver crashed")
            reason = f"internal error in receiver: {exc!r}"
        s.close(reason)
        s.join()
        s.sock.close()
        if self._splicer is not None:
            self._splicer.close()

    def _durable_write(self, head: Header) -> None:
        """The sync write path's frame (a small durable DATA frame to a secondary): what
        dispatch, _apply and _acknowledge do for it, minus their branches for every
        other frame (a few microseconds of every sync write)."""
        self._check_sequenced(head, head.length)
        self.engine.backing.pwrite_durable(head.offset, self.reader.take(head.length))
        self._deferred = 0  # the cumulative ACK covers any still owed
        self.session.send_now(wire.header(FrameType.ACK, seq=head.seq))

    def _recv_payload(self, length: int) -> memoryview:
        """From the reader's buffer, or (larger) into one reused buffer: a frame is
        applied before the next is read."""
        if length <= READ_AHEAD:
            return self.reader.take(length)
        if length > len(self._buf):
            self._buf = bytearray(length)
        view = memoryview(self._buf)[:length]
        self.reader.read_into(view)
        return view

    def _check_sequenced(self, head: Header, count: int) -> None:
        """Everything about a numbered frame that can be checked before applying it."""
        eng = self.engine
        if head.seq != self.last_seq + 1:
            raise WireError(f"frame {head.seq} out of order after {self.last_seq}")
        if eng.role == Role.PRIMARY and not (
            head.type in ROLE_FRAMES or forwarding.accepts(eng, head.type)
        ):
            raise WireError(f"peer shipped {head.type.name} to a primary")
        if head.type in WRITES and head.offset + count > eng.config.size:
            raise WireError(f"{head.type.name} at {head.offset}+{count} is past the volume end")
        self.last_seq = head.seq

    def _spliced(self, head: Header) -> None:
        """DATA/RS_DATA straight from the socket into the backing file."""
        s, eng = self.session, self.engine
        self._check_sequenced(head, head.length)
        assert self._splicer is not None and isinstance(s.sock, socket.socket)
        eng.backing.check()
        if eng.backing.before_write is not None:  # a point-in-time view keeps the old bytes
            eng.backing.before_write(head.offset, head.length)
        try:
            self._splicer.socket_to_file(
                s.sock.fileno(),
                eng.backing.fd,
                head.offset,
                head.length,
                eng.config.peer_timeout,
                read_ahead=self.reader.take_buffered(head.length),
            )
        except FileSideError as exc:
            raise eng.backing.fail("write", exc.cause) from exc
        if head.type == FrameType.DATA and head.flags & wire.FLAG_DURABLE:
            eng.backing.sync()
        if head.type == FrameType.RS_DATA:
            self._resync_done(head.length, head.length, head.offset)
        self._acknowledge(head)

    def _acknowledge(self, head: Header) -> None:
        """Acks are cumulative: while the next frame is already waiting in the socket, a
        write that nobody waits for (no FLAG_DURABLE: async, resync) is acknowledged
        together with the frames after it, at most ACK_BATCH frames later. That saves
        the primary a wake-up per frame. Durable writes and control frames: at once."""
        urgent = head.type not in WRITES or head.flags & wire.FLAG_DURABLE
        if not urgent and self._deferred < ACK_BATCH and self._frame_waiting():
            self._deferred += 1
            return
        self._deferred = 0
        self.session.send_now(wire.header(FrameType.ACK, seq=head.seq))

    def _frame_waiting(self) -> bool:
        if self.reader.buffered >= wire.HEADER.size:
            return True
        if self._splicer is None:  # TLS: the socket's byte count says nothing
            return False
        assert isinstance(self.session.sock, socket.socket)
        pending = fcntl.ioctl(self.session.sock.fileno(), termios.FIONREAD, _FIONREAD_BUF)
        return int.from_bytes(pending, sys.byteorder) >= wire.HEADER.size

    def dispatch(self, head: Header, payload: memoryview) -> None:
        s, eng = self.session, self.engine
        if head.type in forwarding.FORWARDED:  # numbered, answered by FWD_DONE, never ACKed
            self._check_sequenced(head, 0)
            if head.type == FrameType.FWD_DONE:
                forwarding.on_done(s, head)
            else:
                forwarding.on_forward(s, head, payload)
            if self._deferred:  # a cumulative ACK still owed for earlier frames
                self._deferred = 0
                s.send_now(wire.header(FrameType.ACK, seq=head.seq))
            return
        if head.type in SEQUENCED:
            count = wire.zero_count(head, payload) if head.type in ZEROS else head.length
            self._check_sequenced(head, count)
            self._apply(head, payload)
            self._acknowledge(head)
            return
        body = wire.decode_json(head, payload) if head.type in wire.JSON_FRAMES else {}
        if head.type == FrameType.ACK:
            s.on_ack(head.seq)
        elif head.type in (FrameType.PING, FrameType.PONG):
            return
        elif head.type in (FrameType.VERIFY_DIGESTS, FrameType.VERIFY_ASK):
            eng.verifier.on_request(s, head.type, body)
        elif head.type == FrameType.VERIFY_RESULT:
            eng.verifier.on_result(s, body)
        else:
            raise WireError(f"{head.type.name} is not valid on an established link")

    def _apply(self, head: Header, payload: memoryview) -> None:
        eng = self.engine
        if head.type == FrameType.DATA:
            if head.flags & wire.FLAG_DURABLE:
                eng.backing.pwrite_durable(head.offset, payload)
            else:
                eng.backing.pwrite(head.offset, payload)
        elif head.type == FrameType.ZERO:
            eng.backing.zero(head.offset, wire.zero_count(head, payload))
            if head.flags & wire.FLAG_DURABLE:
                eng.backing.sync()
        elif head.type == FrameType.FLUSH:
            eng.backing.sync()
        elif head.type == FrameType.RS_DATA:
            eng.backing.pwrite(head.offset, payload)
            self._resync_done(len(payload), len(payload), head.offset)
        elif head.type == FrameType.RS_ZERO:
            count = wire.zero_count(head, payload)
            if not eng.backing.is_hole(head.offset, count):
                eng.backing.zero(head.offset, count)
            self._resync_done(count, 0, head.offset)
        elif head.type == FrameType.RS_BEGIN:
            self._resync_begin(wire.decode_json(head, payload))
        elif head.type == FrameType.RS_END:
            self._resync_end(wire.decode_json(head, payload))
        elif head.type == FrameType.ROLE:
            self._on_role(wire.decode_json(head, payload))
        elif head.type == FrameType.EPOCH:
            self._on_epoch(wire.decode_json(head, payload))
        elif head.type == FrameType.DUAL:
            dual.on_dual(self.session, wire.decode_json(head, payload))
        elif head.type == FrameType.MODE:
            body = wire.decode_json(head, payload)
            with eng.lock:
                modeswitch.on_mode_frame(eng, body)
                self.session.update_peer(mode=str(body["mode"]), mode_serial=body["serial"])
        elif head.type == FrameType.OUTDATE:
            with eng.lock:
                eng.save(disk=DiskState.OUTDATED)
                eng.last_error = str(wire.decode_json(head, payload).get("reason", "outdated"))

    def _resync_begin(self, body: dict[str, Any]) -> None:
        eng, s = self.engine, self.session
        with eng.lock:
            eng.save(disk=DiskState.INCONSISTENT)
            eng.bitmap.clear_all()
            # the regions still to come, durably: an interrupted resync (and a restart)
            # reports what is really left, and the next connect resyncs exactly those
            try:
                regions = base64.b64decode(str(body.get("regions", "")), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise WireError(f"RS_BEGIN: regions are not base64: {exc}") from None
            if regions:
                eng.bitmap.merge(regions)
            else:  # a peer that does not say: everything is suspect until it arrives
                eng.bitmap.mark(0, eng.config.size)
                eng.bitmap.sync()
            eng.progress = ResyncProgress(int(body.get("total_bytes", 0)), eng.clock.monotonic())
            s.state = ConnState.SYNC_TARGET
            s.update_peer(disk=DiskState.UP_TO_DATE)
            eng.cond.notify_all()

    def _resync_done(self, count: int, sent: int, offset: int) -> None:
        eng = self.engine
        with eng.lock:
            eng.bitmap.clear(offset // eng.config.region_size)
            if eng.progress is not None:
                eng.progress.done_bytes += count
                eng.progress.sent_bytes += sent
                eng.progress.regions_sent += 1

    def _resync_end(self, body: dict[str, Any]) -> None:
        eng, s = self.engine, self.session
        eng.backing.sync()
        with eng.lock:
            source = Generation.from_dict(body["generation"])
            discarded_generation = eng.meta.generation.current
            eng.save(
                disk=DiskState.UP_TO_DATE,
                generation=eng.meta.generation.adopt(source),
                discard_local=False,
            )
            eng.bitmap.clear_all()
            lost = eng.ledger.discard(eng.clock.now(), discarded_generation)
            if lost is not None:
                log.warning(
                    "%s: discarded %d write(s) (%d bytes) this side acknowledged between %s"
                    " and %s that the peer never received: resynced from the peer",
                    eng.meta.name, lost.tally.writes, lost.tally.bytes,
                    eng.ledger.status()["discarded"]["first"],
                    eng.ledger.status()["discarded"]["last"],
                )  # fmt: skip
            if eng.progress is not None:
                eng.progress.done_bytes = eng.progress.total_bytes
                eng.progress.finished = eng.clock.monotonic()
            s.state = ConnState.CONNECTED
            eng.last_error = None
            eng.cond.notify_all()

    def _on_role(self, body: dict[str, Any]) -> None:
        eng, s = self.engine, self.session
        role = Role(body["role"])
        with eng.lock:
            s.update_peer(role=role)
            eng.cond.notify_all()
        if role == Role.PRIMARY and eng.role == Role.PRIMARY:
            dual.peer_joins(s)  # WireError unless two primaries are allowed here
        elif role == Role.SECONDARY:
            dual.peer_demoted(s)  # the hand-over, if this side was the second primary

    def _on_epoch(self, body: dict[str, Any]) -> None:
        eng, s = self.engine, self.session
        epoch = int(body["epoch"])
        with eng.lock:
            s.update_peer(epoch=epoch)
            if eng.role == Role.PRIMARY and epoch > eng.meta.epoch and not eng.dual.second:
                # a newer primary exists: acknowledge nothing from this moment (and keep
                # the old epoch, so every later handshake finds this side stale too). A
                # second primary (dual.py) adopts its first primary's newer epoch instead
                why = f"the peer announced fencing epoch {epoch}, newer than {eng.meta.epoch}"
                freeze.complete_later(eng, freeze.make_stale(eng, why))
                return
            if s.peer.role == Role.PRIMARY and epoch < eng.meta.epoch:
                eng.last_error = (
                    f"rejected the peer's stream: its fencing epoch {epoch} is older than "
                    f"{eng.meta.epoch} seen here"
                )
                raise WireError(eng.last_error)
            if epoch > eng.meta.epoch:
                eng.save(epoch=epoch)
