"""The NBD export: TCP (and optionally a unix socket), one thread per client.

The byte-level protocol lives in nbd_proto.py; this module moves bytes between sockets,
the protocol objects and the engine. A client that breaks the protocol is disconnected
alone; the server keeps serving the others. The export is advertised read-only, and
writes are refused with EPERM, whenever this side is not primary. Clients past the
handshake hold one of `MAX_CLIENTS` slots (nbd_slots.py: when all are held, the
longest-idle one makes room for a newcomer); TCP keepalive closes the connections of
clients that vanished.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from drorch.replication.base import ReplicationError
from drorch.replication.pyrepl import nbd_meta as meta
from drorch.replication.pyrepl import nbd_proto as nbd
from drorch.replication.pyrepl.engine import Engine
from drorch.replication.pyrepl.errors import NbdProtocolError, NotReadable, ReadOnly
from drorch.replication.pyrepl.listener import Acceptor, Address, tcp_listener, unix_listener
from drorch.replication.pyrepl.nbd_handshake import Handshake, greeting
from drorch.replication.pyrepl.nbd_inbox import NbdInbox
from drorch.replication.pyrepl.nbd_replies import Replies
from drorch.replication.pyrepl.nbd_slots import EVICT_IDLE, MAX_CLIENTS, Slots
from drorch.replication.pyrepl.pipes import Payload, PipePayload, PipePool, release
from drorch.replication.pyrepl.pointintime import PointInTimeViews

log = logging.getLogger("drorch.pyrepl.nbd")

HANDSHAKE_TIMEOUT = 30.0  # the whole handshake, however slowly its bytes trickle in
# Connections in their handshake at once, beside the MAX_CLIENTS past it; more are closed
# at once, so a flood cannot take the descriptors the control socket needs.
MAX_HANDSHAKES = 16
# TCP keepalive: a client whose host is gone (no answer to 6 probes after 60 s of
# silence) is closed after about 2 minutes. A live client's kernel answers the probes,
# however long the client itself stays silent.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES = 60, 10, 6
# Once a request header has begun, the rest of it and its payload must keep arriving:
# a client silent this long mid-request is dropped (its connection only). Between
# requests a client may be idle for as long as it likes.
PAYLOAD_TIMEOUT = 30.0


def nbd_uri(name: str, tcp: Address | None, unix: Path | None) -> str | None:
    """The URI qemu, qemu-img, qemu-io and nbdinfo accept for this export."""
    if tcp is not None:
        host, port = tcp
        host = f"[{host}]" if ":" in host else host
        return f"nbd://{host}:{port}/{name}"
    if unix is not None:
        return f"nbd+unix:///{name}?socket={unix}"
    return None


class NbdServer:
    def __init__(
        self,
        engine: Engine,
        tcp: Address | None,
        unix: Path | None,
        stop: threading.Event,
        *,
        payload_timeout: float = PAYLOAD_TIMEOUT,
        views: PointInTimeViews | None = None,
        idle_evict: float = EVICT_IDLE,
    ) -> None:
        self.engine = engine
        self.slots = Slots(time.monotonic, limit=MAX_CLIENTS, evict_idle=idle_evict)
        self.views = views  # point-in-time views: read-only exports VOLUME@LABEL
        self.payload_timeout = payload_timeout
        self.tcp = tcp
        self.unix = unix
        self.stop = stop
        self._acceptors: list[Acceptor] = []
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.clients_served = 0
        self.protocol_errors = 0
        self.stalled_requests = 0
        self.pipes = PipePool()  # large TCP writes travel in pipes (pipes.py)
        self.piped_writes = 0

    @property
    def uri(self) -> str | None:
        return nbd_uri(self.engine.meta.name, self.bound_tcp, self.unix)

    @property
    def bound_tcp(self) -> Address | None:
        for acceptor in self._acceptors:
            if acceptor.address is not None:
                return acceptor.address
        return None

    def start(self) -> None:
        listeners = []
        if self.tcp is not None:
            listeners.append(tcp_listener(self.tcp))
        if self.unix is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix)
            listeners.append(unix_listener(str(self.unix)))
        for srv in listeners:
            acceptor = Acceptor(
                srv,
                self._client,
                self.stop,
                name="pyrepl-nbd",
                max_active=MAX_CLIENTS + MAX_HANDSHAKES,
            )
            self._acceptors.append(acceptor)
            acceptor.start()

    def close(self) -> None:
        self.stop.set()
        for acceptor in self._acceptors:
            acceptor.close()
        self.pipes.close()
        if self.unix is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix)
        with self._lock:
            for conn in list(self._clients):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def _client(self, conn: socket.socket) -> None:
        with self._lock:
            self._clients.add(conn)
            self.clients_served += 1
        try:
            if conn.family != socket.AF_UNIX:
                _tune_tcp(conn)
            replies = Replies(conn, structured=False, settled=lambda: self.slots.settled(conn))
            agreed = self._handshake(conn, replies)
            if agreed is not None:
                conn.settimeout(None)  # blocking; SO_RCVTIMEO bounds each receive instead
                seconds = int(self.payload_timeout)
                micros = int((self.payload_timeout - seconds) * 1e6)
                timeval = struct.pack("ll", seconds, micros)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
                replies.structured = agreed.structured
                self._transmission(conn, agreed, replies)
        except TimeoutError as exc:
            self.stalled_requests += 1
            log.warning("nbd client dropped: %s", exc)
        except (OSError, EOFError) as exc:
            log.debug("nbd client gone: %s", exc)
        except NbdProtocolError as exc:
            self.protocol_errors += 1
            log.warning("nbd client dropped: %s", exc)
        finally:
            self.slots.release(conn)
            with self._lock:
                self._clients.discard(conn)
            conn.close()

    def _handshake(self, conn: socket.socket, replies: Replies) -> nbd.Negotiated | None:
        """The handshake; its end claims a slot (nbd_slots.py) or is refused."""
        eng = self.engine
        export = nbd.Export(
            eng.meta.name,
            eng.config.size,
            read_only=not eng.writable(),
            description=f"pyrepl volume {eng.meta.name} ({eng.role.value})",
        )
        exports = {export.name: export}
        for view in list(self.views.views.values()) if self.views else []:
            exports[view.export] = nbd.Export(
                view.export, eng.config.size, read_only=True,
                description=f"pyrepl volume {eng.meta.name} as it was at {view.taken_at:.3f}",
            )  # fmt: skip
        peer = _peer(conn)
        hs = Handshake(exports, admit=lambda _: self.slots.claim(conn, peer, replies.pending))
        # one deadline for the whole handshake, not per receive: a client sending a byte
        # every few seconds was held forever (attack)
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        conn.settimeout(HANDSHAKE_TIMEOUT)
        conn.sendall(greeting())
        while not (hs.done or hs.closed):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"handshake not finished in {HANDSHAKE_TIMEOUT:g} s")
            conn.settimeout(left)
            data = conn.recv(65536)
            if not data:
                return None
            reply = hs.receive(data)
            if reply:
                conn.sendall(reply)
        if hs.closed:
            if not hs.refused and hs.reason != "client aborted the handshake":
                self.protocol_errors += 1
                log.warning("nbd handshake closed: %s", hs.reason)
            return None
        if hs.leftover:
            raise NbdProtocolError("client sent requests before the handshake finished")
        return hs.negotiated

    def _transmission(self, conn: socket.socket, agreed: nbd.Negotiated, replies: Replies) -> None:
        pipes = None if conn.family == socket.AF_UNIX else self.pipes
        inbox = NbdInbox(
            conn, pipes, self.stop, self.payload_timeout, begin=lambda: self.slots.begin(conn)
        )
        try:
            self._serve_requests(inbox, agreed, replies)
        finally:
            replies.drain()  # NBD: finish what was started before the socket goes

    def _serve_requests(self, inbox: NbdInbox, agreed: nbd.Negotiated, replies: Replies) -> None:
        export = agreed.export
        while True:
            self.slots.answered(inbox.conn)  # the last request is handled: idle from now
            req = nbd.parse_request(inbox.header())
            verdict = nbd.check_request(
                req,
                export,
                writable=not export.read_only,
                structured=agreed.structured,
                allocation=agreed.allocation_id is not None,
            )
            payload: Payload | None = None
            if req.has_payload and not verdict.close:
                payload = inbox.payload(req.length)
                self.piped_writes += isinstance(payload, PipePayload)
            if verdict.error:
                log.info("nbd request refused: %s", verdict.reason)
                release(payload)
                replies.error(req.handle, verdict.error, verdict.reason)
                if verdict.close:
                    return
                continue
            if req.type == nbd.Cmd.DISC:
                return
            if req.type == nbd.Cmd.READ:
                self._read(req, replies, export.name)
            elif req.type == nbd.Cmd.WRITE:
                assert payload is not None
                if req.length == 0:  # nothing to write or ship: answered at once
                    replies.error(req.handle, 0)
                    continue
                self._write(req, payload, replies)
            elif req.type == nbd.Cmd.BLOCK_STATUS:
                assert agreed.allocation_id is not None
                self._block_status(req, agreed.allocation_id, replies, export.name)
            else:
                replies.error(req.handle, *self._modify(req))

    def _read(self, req: nbd.Request, replies: Replies, export: str) -> None:
        try:
            data = self._source(export)(req.offset, req.length)
        except (NotReadable, ReplicationError, OSError) as exc:
            log.warning("nbd read failed: %s", exc)
            replies.error(req.handle, nbd.EIO, str(exc))
            return
        replies.data(req.handle, req.offset, data)

    def _source(self, export: str) -> Callable[[int, int], bytes]:
        """Where an export's reads come from: the engine, or a point-in-time view."""
        if export == self.engine.meta.name or self.views is None:
            return self.engine.read
        view = self.views.get(export)
        if view is None:
            raise ReplicationError(f"point-in-time view {export} was dropped")
        return view.read

    def _block_status(
        self, req: nbd.Request, context_id: int, replies: Replies, export: str
    ) -> None:
        req_one = bool(req.flags & nbd.CMD_FLAG_REQ_ONE)
        try:
            if export != self.engine.meta.name:  # a view: all data, as far as it tells
                self._source(export)  # EIO once dropped
                extents = [(req.length, False)]
            else:
                extents = self.engine.allocation(
                    req.offset, req.length, 1 if req_one else meta.MAX_EXTENTS
                )
        except (NotReadable, ReplicationError, OSError) as exc:
            log.warning("nbd block status failed: %s", exc)
            replies.error(req.handle, nbd.EIO, str(exc))
            return
        found = meta.descriptors(extents, req_one=req_one, limit=req.length)
        if not found:
            replies.error(req.handle, nbd.EIO, "no extent found")
            return
        replies.raw(nbd.block_status_chunk(req.handle, context_id, found))

    def _write(self, req: nbd.Request, payload: Payload, replies: Replies) -> None:
        """The reply goes out when the engine says so, possibly from the link's thread.
        The engine owns (and releases) the payload from here on."""
        replies.started()
        try:
            self.engine.write_then(
                req.offset,
                payload,
                fua=req.fua,
                done=lambda: replies.error(req.handle, 0, done=True),
                # a held acknowledgement given up (fencing freeze ran out, stale primary)
                fail=lambda exc: replies.error(req.handle, nbd.EIO, str(exc), done=True),
            )
        except ReadOnly as exc:
            replies.error(req.handle, nbd.EPERM, str(exc), done=True)
        except ValueError as exc:
            replies.error(req.handle, nbd.EINVAL, str(exc), done=True)
        except (OSError, ReplicationError) as exc:
            log.error("nbd write failed: %s", exc)
            replies.error(req.handle, nbd.EIO, str(exc), done=True)

    def _modify(self, req: nbd.Request) -> tuple[int, str]:
        """WRITE_ZEROES, TRIM, FLUSH (CACHE is a no-op): (NBD error or 0, reason)."""
        eng = self.engine
        try:
            if req.type in (nbd.Cmd.WRITE_ZEROES, nbd.Cmd.TRIM) and req.length:
                no_hole = req.type == nbd.Cmd.WRITE_ZEROES and req.flags & nbd.CMD_FLAG_NO_HOLE
                eng.zero(req.offset, req.length, fua=req.fua, punch=not no_hole)
            elif req.type == nbd.Cmd.FLUSH:
                eng.flush()
            return 0, ""
        except ReadOnly as exc:
            return nbd.EPERM, str(exc)
        except ValueError as exc:
            return nbd.EINVAL, str(exc)
        except (OSError, ReplicationError) as exc:
            log.error("nbd %s failed: %s", nbd.Cmd(req.type).name, exc)
            return nbd.EIO, str(exc)


def _tune_tcp(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


def _peer(conn: socket.socket) -> str:
    """The client's address for the log ("unix" for the unix socket)."""
    if conn.family == socket.AF_UNIX:
        return "unix socket client"
    try:
        host, port = conn.getpeername()[:2]
    except OSError:
        return "a client"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
