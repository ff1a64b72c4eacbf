"""Establishing the replication link: listen, dial, and the HELLO/BITMAP handshake.

Each side listens; a side given `--peer` also dials, every `DIAL_INTERVAL` while it
wants a connection and has none. When both sides dial, the acceptor with the smaller
node id refuses the other's attempt (it will win with its own), so exactly one
connection survives. Both sides then exchange views and bitmaps and run the same pure
`decide_sync()`; the engine acts on the verdict.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from drorch.replication.pyrepl import modeswitch, wire
from drorch.replication.pyrepl.errors import Rejected as Rejected
from drorch.replication.pyrepl.handshake import SideView
from drorch.replication.pyrepl.listener import Acceptor, Address, tcp_listener
from drorch.replication.pyrepl.receiver import recv_exact
from drorch.replication.pyrepl.tls import LinkTls, PinError
from drorch.replication.pyrepl.tls_stream import Stream, TlsStream
from drorch.replication.pyrepl.wire import FrameType, WireError

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine

log = logging.getLogger("drorch.pyrepl")

DIAL_INTERVAL = 0.5
HANDSHAKE_TIMEOUT = 5.0  # one receive during the handshake
# The whole handshake (TLS, HELLO, BITMAP), however slowly its bytes trickle in: a
# connection that sends a byte every few seconds is cut here instead of held forever.
HANDSHAKE_DEADLINE = 30.0
# Before anything is authenticated, a frame header alone must not make this side allocate
# a frame's worth (64 MiB) of memory: a HELLO or REJECT is a small JSON object, and a
# BITMAP is exactly this volume's bitmap (one of another volume is read and dropped).
MAX_HELLO = 64 * 1024
# Incoming handshakes at once; one more cuts the oldest unfinished one, so clients that
# hold every slot (trickling a byte a second) cannot keep the real peer out. Connection
# threads at all (cut ones end at once) are bounded by 4 times as many.
MAX_HANDSHAKES = 8
SOCKET_BUFFER = 4 * 1024 * 1024


def tune(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)


def _read_header(sock: Stream, expect: set[FrameType]) -> wire.Header:
    head = wire.parse_header(recv_exact(sock, wire.HEADER.size))
    if head.type not in expect:
        raise WireError(f"expected {sorted(t.name for t in expect)}, got {head.type.name}")
    return head


def _read_frame(sock: Stream, expect: set[FrameType]) -> tuple[wire.Header, bytearray]:
    """A HELLO or REJECT (at most MAX_HELLO bytes: checked before any allocation)."""
    head = _read_header(sock, expect)
    if head.length > MAX_HELLO:
        raise WireError(f"{head.type.name} of {head.length} bytes exceeds {MAX_HELLO}")
    payload = recv_exact(sock, head.length) if head.length else bytearray()
    return head, payload


def bitmap_bytes(size: int, region_size: int) -> int:
    """The length of the BITMAP frame of a volume (bitmap.py's layout)."""
    return ((size + region_size - 1) // region_size + 7) // 8


def _read_bitmap(sock: Stream, peer: SideView, size: int, region_size: int) -> bytes:
    """The peer's BITMAP: exactly this volume's length when the peer's volume is this one;
    a mismatched volume's (refused anyway) is read in small pieces and dropped."""
    head = _read_header(sock, {FrameType.BITMAP})
    if (peer.size, peer.region_size) == (size, region_size):
        mine = bitmap_bytes(size, region_size)
        if head.length != mine:
            raise WireError(f"BITMAP of {head.length} bytes; this volume's has {mine}")
        return bytes(recv_exact(sock, mine))
    left = head.length
    while left:
        left -= len(recv_exact(sock, min(left, 65536)))
    return b""


class _Deadline:
    """Cuts a handshake that is not done by HANDSHAKE_DEADLINE (shutdown wakes the
    blocked receive). `disarm()` under the engine lock, just before the connection is
    attached: False when the deadline already struck."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._over = False
        self._timer = threading.Timer(HANDSHAKE_DEADLINE, self.cut)
        self._timer.daemon = True
        self._timer.start()

    def cut(self) -> None:
        """Now (an evicted handshake) or at the deadline; nothing once disarmed."""
        self._timer.cancel()  # its thread ends at once
        with self._lock:
            if self._over:
                return
            self._over = True
        with contextlib.suppress(OSError):
            self._conn.shutdown(socket.SHUT_RDWR)

    def disarm(self) -> bool:
        self._timer.cancel()
        with self._lock:
            if self._over:
                return False
            self._over = True
        return True


class Link:
    def __init__(
        self,
        engine: Engine,
        listen: Address | None,
        peer: Address | None,
        stop: threading.Event,
        *,
        tls: LinkTls | None = None,
    ) -> None:
        self.engine = engine
        self.listen_addr = listen
        self.peer_addr = peer
        self.stop = stop
        self.tls = tls
        self._acceptor: Acceptor | None = None
        self._threads: list[threading.Thread] = []
        self._pending: OrderedDict[int, _Deadline] = OrderedDict()  # handshakes, oldest first
        self._pending_lock = threading.Lock()

    @property
    def bound(self) -> Address | None:
        return None if self._acceptor is None else self._acceptor.address

    def start(self) -> None:
        if self.listen_addr is not None:
            srv = tcp_listener(self.listen_addr)
            self._acceptor = Acceptor(
                srv, self._accepted, self.stop, name="pyrepl-accept", max_active=4 * MAX_HANDSHAKES
            )
            self._acceptor.start()
        if self.peer_addr is not None:
            self._spawn(self._dial_loop, "pyrepl-dial")

    def _spawn(self, target: object, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        self._threads.append(t)
        t.start()

    def close(self) -> None:
        self.stop.set()
        if self._acceptor is not None:
            self._acceptor.close()
        for t in self._threads:
            t.join(5.0)

    # ------------------------------------------------------------------ accept
    def _accepted(self, conn: socket.socket) -> None:
        deadline = _Deadline(conn)
        with self._pending_lock:
            if len(self._pending) >= MAX_HANDSHAKES:
                self._pending.popitem(last=False)[1].cut()  # a no-op once attached
            self._pending[id(deadline)] = deadline
        try:
            self._handshake_in(conn, deadline)
        finally:
            deadline.cut()  # ends its timer; a no-op on a connection attached or refused
            with self._pending_lock:
                self._pending.pop(id(deadline), None)

    def _handshake_in(self, conn: socket.socket, deadline: _Deadline) -> None:
        sock: Stream = conn
        try:
            tune(conn)
            conn.settimeout(HANDSHAKE_TIMEOUT)
            if self.tls is not None:
                tls_stream = TlsStream(conn, self.tls.server, server_side=True)
                sock = tls_stream
                self.tls.check(tls_stream)
            head, body = _read_frame(sock, {FrameType.HELLO})
            peer = SideView.from_dict(wire.decode_json(head, body))
            eng = self.engine
            peer_bitmap = _read_bitmap(sock, peer, eng.config.size, eng.config.region_size)
            with eng.lock:
                if not deadline.disarm():
                    raise TimeoutError(f"handshake not done in {HANDSHAKE_DEADLINE:g} s")
                refusal = self._refusal(peer)
                if refusal:
                    sock.sendall(wire.json_frame(FrameType.REJECT, {"reason": refusal}))
                    sock.close()
                    return
                self._send_hello(sock)
                eng.attach(sock, peer, peer_bitmap)
        except (OSError, EOFError, WireError, ValueError, KeyError, PinError) as exc:
            log.info("%s: incoming replication connection failed: %s", self.engine.meta.name, exc)
            deadline.disarm()
            sock.close()

    def _refusal(self, peer: SideView) -> str:
        eng = self.engine
        mine = (eng.meta.name, eng.config.size, eng.config.region_size)
        if (peer.name, peer.size, peer.region_size) != mine:
            # a stray or misconfigured peer: refuse it without giving up on the real one
            eng.last_error = (
                f"refused a connection for volume {peer.name}/{peer.size}B/"
                f"{peer.region_size}B regions: this is {mine[0]}/{mine[1]}B/{mine[2]}B regions"
            )
            return eng.last_error
        if why := modeswitch.refusal(eng, peer):
            # DRBD refuses differing protocols too: a sync primary must never count an
            # async peer's acknowledgement as "on both disks" (a live switch is adopted)
            eng.last_error = why
            return why
        if not eng.want_connect:
            return "StandAlone: not accepting connections"
        if eng.session is not None and eng.session.alive:
            return "already connected"
        if self.peer_addr is not None and eng.meta.node_id < peer.node_id:
            return "both sides dial; the side with the smaller node id keeps its own connection"
        return ""

    def _send_hello(self, sock: Stream) -> SideView:
        view = self.engine.view()
        body = view.as_dict() | {"protocol": wire.PROTOCOL_VERSION}
        bitmap = self.engine.bitmap.snapshot()
        sock.sendall(
            wire.json_frame(FrameType.HELLO, body)
            + wire.header(FrameType.BITMAP, length=len(bitmap))
            + bitmap
        )
        return view

    # ------------------------------------------------------------------ dial
    def _dial_loop(self) -> None:
        while not self.stop.wait(DIAL_INTERVAL):
            with self.engine.lock:
                wanted = self.engine.want_connect and (
                    self.engine.session is None or not self.engine.session.alive
                )
            if wanted:
                self.dial_once()
                with self.engine.lock:
                    self.engine.dial_attempts += 1
                    self.engine.cond.notify_all()

    def dial_once(self) -> None:
        assert self.peer_addr is not None
        eng = self.engine
        try:
            conn = socket.create_connection(self.peer_addr, timeout=HANDSHAKE_TIMEOUT)
        except OSError:
            return  # peer not up yet: stay Connecting
        sock: Stream = conn
        deadline = _Deadline(conn)
        try:
            tune(conn)
            conn.settimeout(HANDSHAKE_TIMEOUT)
            if self.tls is not None:
                tls_stream = TlsStream(conn, self.tls.client, server_side=False)
                sock = tls_stream
                self.tls.check(tls_stream)
            with eng.lock:
                sent = self._send_hello(sock)
            head, body = _read_frame(sock, {FrameType.HELLO, FrameType.REJECT})
            if head.type == FrameType.REJECT:
                raise Rejected(str(wire.decode_json(head, body).get("reason")))
            peer = SideView.from_dict(wire.decode_json(head, body))
            peer_bitmap = _read_bitmap(sock, peer, eng.config.size, eng.config.region_size)
            with eng.lock:
                if not deadline.disarm():
                    raise TimeoutError(f"handshake not done in {HANDSHAKE_DEADLINE:g} s")
                now = eng.view()
                if _essence(now) != _essence(sent) or (
                    eng.session is not None and eng.session.alive
                ):
                    sock.close()  # state moved during the handshake: try again
                    return
                eng.attach(sock, peer, peer_bitmap)
        except Rejected as exc:
            reason = f"the peer refused this side: {exc}"
            with eng.lock:
                if not _benign(str(exc)) and eng.last_error != reason:  # once, not every dial
                    log.warning("%s: %s", eng.meta.name, reason)
                    eng.last_error = reason
            deadline.disarm()
            sock.close()
        except (OSError, EOFError, WireError, ValueError, KeyError, PinError) as exc:
            log.info("%s: replication handshake failed: %s", eng.meta.name, exc)
            deadline.disarm()
            sock.close()


def _benign(reason: str) -> bool:
    """Refusals that are part of normal operation, not a misconfiguration."""
    return reason.startswith(("already connected", "both sides dial", "StandAlone"))


def _essence(view: SideView) -> tuple[object, ...]:
    return (
        view.role,
        view.disk,
        view.generation,
        view.epoch,
        view.discard_local,
        view.dirty_regions == 0,
    )
