"""The NBD export: TCP (and optionally a unix socket), one thread per client.

The byte-level protocol lives in nbd_proto.py; this module moves bytes between sockets,
the protocol objects and the engine. A client that breaks the protocol is disconnected
alone; the server keeps serving the others. The export is advertised read-only, and
writes are refused with EPERM, whenever this side is not primary.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path

from drorch.replication.base import ReplicationError
from drorch.replication.pyrepl import nbd_proto as nbd
from drorch.replication.pyrepl.engine import Engine, NotReadable, ReadOnly
from drorch.replication.pyrepl.pipes import Payload, PipePayload, PipePool, release
from drorch.replication.pyrepl.receiver import recv_exact
from drorch.replication.pyrepl.session import send_buffers

log = logging.getLogger("drorch.pyrepl.nbd")

HANDSHAKE_TIMEOUT = 30.0
Address = tuple[str, int]


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
        self, engine: Engine, tcp: Address | None, unix: Path | None, stop: threading.Event
    ) -> None:
        self.engine = engine
        self.tcp = tcp
        self.unix = unix
        self.stop = stop
        self._listeners: list[socket.socket] = []
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.clients_served = 0
        self.protocol_errors = 0
        self.pipes = PipePool()  # large TCP writes travel in pipes (pipes.py)
        self.piped_writes = 0

    @property
    def uri(self) -> str | None:
        return nbd_uri(self.engine.meta.name, self.bound_tcp, self.unix)

    @property
    def bound_tcp(self) -> Address | None:
        for srv in self._listeners:
            if srv.family in (socket.AF_INET, socket.AF_INET6):
                host, port = srv.getsockname()[:2]
                return str(host), int(port)
        return None

    def start(self) -> None:
        if self.tcp is not None:
            host, port = self.tcp
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            srv = socket.socket(family, socket.SOCK_STREAM)
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind((host, port))
            self._listen(srv)
        if self.unix is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix)
            srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            srv.bind(str(self.unix))
            self._listen(srv)

    def _listen(self, srv: socket.socket) -> None:
        srv.listen(16)
        srv.settimeout(0.5)
        self._listeners.append(srv)
        t = threading.Thread(target=self._accept_loop, args=(srv,), daemon=True)
        self._threads.append(t)
        t.start()

    def close(self) -> None:
        self.stop.set()
        for srv in self._listeners:
            with contextlib.suppress(OSError):
                srv.shutdown(socket.SHUT_RDWR)  # wakes accept()
        for t in self._threads:
            t.join(5.0)
        for srv in self._listeners:
            srv.close()
        self.pipes.close()
        if self.unix is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix)
        with self._lock:
            for conn in list(self._clients):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def _accept_loop(self, srv: socket.socket) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with self._lock:
            self._clients.add(conn)
            self.clients_served += 1
        try:
            if conn.family != socket.AF_UNIX:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(HANDSHAKE_TIMEOUT)
            export = self._handshake(conn)
            if export is not None:
                conn.settimeout(None)
                self._transmission(conn, export)
        except (OSError, EOFError) as exc:
            log.debug("nbd client gone: %s", exc)
        except nbd.ProtocolError as exc:
            self.protocol_errors += 1
            log.warning("nbd client dropped: %s", exc)
        finally:
            with self._lock:
                self._clients.discard(conn)
            conn.close()

    def _handshake(self, conn: socket.socket) -> nbd.Export | None:
        eng = self.engine
        export = nbd.Export(
            eng.meta.name,
            eng.config.size,
            read_only=not eng.writable(),
            description=f"pyrepl volume {eng.meta.name} ({eng.role.value})",
        )
        hs = nbd.Handshake({export.name: export})
        conn.sendall(nbd.greeting())
        while not (hs.done or hs.closed):
            data = conn.recv(65536)
            if not data:
                return None
            reply = hs.receive(data)
            if reply:
                conn.sendall(reply)
        if hs.closed:
            if hs.reason != "client aborted the handshake":
                self.protocol_errors += 1
                log.warning("nbd handshake closed: %s", hs.reason)
            return None
        if hs.leftover:
            raise nbd.ProtocolError("client sent requests before the handshake finished")
        return hs.export

    def _transmission(self, conn: socket.socket, export: nbd.Export) -> None:
        replies = _Replies(conn)
        try:
            self._serve_requests(conn, export, replies)
        finally:
            replies.drain()  # NBD: finish what was started before the socket goes

    def _serve_requests(self, conn: socket.socket, export: nbd.Export, replies: _Replies) -> None:
        eng = self.engine
        while True:
            req = nbd.parse_request(recv_exact(conn, nbd.REQUEST.size))
            verdict = nbd.check_request(req, export, writable=not export.read_only)
            payload: Payload | None = None
            if req.has_payload and not verdict.close:
                payload = self._receive(conn, req.length)
            if verdict.error:
                log.info("nbd request refused: %s", verdict.reason)
                release(payload)
                replies.send(req.handle, verdict.error)
                if verdict.close:
                    return
                continue
            if req.type == nbd.Cmd.DISC:
                return
            if req.type == nbd.Cmd.READ:
                try:
                    data = eng.read(req.offset, req.length)
                except (NotReadable, ReplicationError, OSError) as exc:
                    log.warning("nbd read failed: %s", exc)
                    replies.send(req.handle, nbd.EIO)
                    continue
                replies.send(req.handle, 0, data)
            elif req.type == nbd.Cmd.WRITE:
                assert payload is not None
                self._write(req, payload, replies)
            else:
                replies.send(req.handle, self._modify(req))

    def _receive(self, conn: socket.socket, length: int) -> Payload:
        if conn.family != socket.AF_UNIX and self.pipes.takes(length):
            payload = PipePayload.from_socket(self.pipes, conn, length)
            self.piped_writes += isinstance(payload, PipePayload)
            return payload
        return recv_exact(conn, length)

    def _write(self, req: nbd.Request, payload: Payload, replies: _Replies) -> None:
        """The reply goes out when the engine says so, possibly from the link's thread.
        The engine owns (and releases) the payload from here on."""
        replies.started()
        try:
            self.engine.write_then(
                req.offset,
                payload,
                fua=req.fua,
                done=lambda: replies.send(req.handle, 0, done=True),
            )
        except ReadOnly:
            replies.send(req.handle, nbd.EPERM, done=True)
        except ValueError:
            replies.send(req.handle, nbd.EINVAL, done=True)
        except (OSError, ReplicationError) as exc:
            log.error("nbd write failed: %s", exc)
            replies.send(req.handle, nbd.EIO, done=True)

    def _modify(self, req: nbd.Request) -> int:
        eng = self.engine
        try:
            if req.type in (nbd.Cmd.WRITE_ZEROES, nbd.Cmd.TRIM):
                no_hole = req.type == nbd.Cmd.WRITE_ZEROES and req.flags & nbd.CMD_FLAG_NO_HOLE
                eng.zero(req.offset, req.length, fua=req.fua, punch=not no_hole)
            elif req.type == nbd.Cmd.FLUSH:
                eng.flush()
            return 0
        except ReadOnly:
            return nbd.EPERM
        except ValueError:
            return nbd.EINVAL
        except (OSError, ReplicationError) as exc:
            log.error("nbd %s failed: %s", nbd.Cmd(req.type).name, exc)
            return nbd.EIO


class _Replies:
    """Replies of one client, sent whole and one at a time from whichever thread
    finishes a request; counts writes still waiting for their acknowledgement."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())
        self._pending = 0

    def started(self) -> None:
        with self._cond:
            self._pending += 1

    def send(
        self, handle: int, error: int, data: bytes | None = None, *, done: bool = False
    ) -> None:
        try:
            with self._lock:
                if data is None:
                    self.conn.sendall(nbd.simple_reply(handle, error))
                else:
                    send_buffers(self.conn, (nbd.simple_reply(handle, error), data))
        except OSError as exc:
            log.debug("nbd reply not delivered: %s", exc)
        finally:
            if done:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

    def drain(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._pending == 0, timeout)
