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
from typing import TYPE_CHECKING

from drorch.replication.pyrepl import wire
from drorch.replication.pyrepl.handshake import SideView
from drorch.replication.pyrepl.receiver import recv_exact
from drorch.replication.pyrepl.tls import LinkTls, PinError
from drorch.replication.pyrepl.tls_stream import Stream, TlsStream
from drorch.replication.pyrepl.wire import FrameType, WireError

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine

log = logging.getLogger("drorch.pyrepl")

DIAL_INTERVAL = 0.5
HANDSHAKE_TIMEOUT = 5.0
SOCKET_BUFFER = 4 * 1024 * 1024
Address = tuple[str, int]


def tune(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)


def _read_frame(sock: Stream, expect: set[FrameType]) -> tuple[wire.Header, bytearray]:
    head = wire.parse_header(recv_exact(sock, wire.HEADER.size))
    payload = recv_exact(sock, head.length) if head.length else bytearray()
    if head.type not in expect:
        raise WireError(f"expected {sorted(t.name for t in expect)}, got {head.type.name}")
    return head, payload


class Rejected(Exception):
    """The peer declined this connection attempt (it is StandAlone, busy, or dials)."""


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
        self._server: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    @property
    def bound(self) -> Address | None:
        if self._server is None:
            return None
        host, port = self._server.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        if self.listen_addr is not None:
            host, port = self.listen_addr
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            srv = socket.socket(family, socket.SOCK_STREAM)
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind((host, port))
            srv.listen(8)
            srv.settimeout(0.5)
            self._server = srv
            self._spawn(self._accept_loop, "pyrepl-accept")
        if self.peer_addr is not None:
            self._spawn(self._dial_loop, "pyrepl-dial")

    def _spawn(self, target: object, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        self._threads.append(t)
        t.start()

    def close(self) -> None:
        self.stop.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)  # wakes accept()
        for t in self._threads:
            t.join(5.0)
        if self._server is not None:
            self._server.close()

    # ------------------------------------------------------------------ accept
    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self.stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._accepted, args=(conn,), daemon=True).start()

    def _accepted(self, conn: socket.socket) -> None:
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
            _, peer_bitmap = _read_frame(sock, {FrameType.BITMAP})
            eng = self.engine
            with eng.lock:
                refusal = self._refusal(peer)
                if refusal:
                    sock.sendall(wire.json_frame(FrameType.REJECT, {"reason": refusal}))
                    sock.close()
                    return
                self._send_hello(sock)
                eng.attach(sock, peer, bytes(peer_bitmap))
        except (OSError, EOFError, WireError, ValueError, KeyError, PinError) as exc:
            log.info("%s: incoming replication connection failed: %s", self.engine.meta.name, exc)
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
        if peer.mode and peer.mode != eng.mode:
            # DRBD refuses differing protocols too: a sync primary must never count an
            # async peer's acknowledgement as "on both disks"
            eng.last_error = (
                f"refused a peer in {peer.mode} mode: this side replicates {eng.mode};"
                " both sides of a volume must use the same mode"
            )
            return eng.last_error
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
            _, peer_bitmap = _read_frame(sock, {FrameType.BITMAP})
            with eng.lock:
                now = eng.view()
                if _essence(now) != _essence(sent) or (
                    eng.session is not None and eng.session.alive
                ):
                    sock.close()  # state moved during the handshake: try again
                    return
                eng.attach(sock, peer, bytes(peer_bitmap))
        except Rejected as exc:
            reason = f"the peer refused this side: {exc}"
            with eng.lock:
                if not _benign(str(exc)) and eng.last_error != reason:  # once, not every dial
                    log.warning("%s: %s", eng.meta.name, reason)
                    eng.last_error = reason
            sock.close()
        except (OSError, EOFError, WireError, ValueError, KeyError, PinError) as exc:
            log.info("%s: replication handshake failed: %s", eng.meta.name, exc)
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
