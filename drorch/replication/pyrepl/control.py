"""The control socket: one JSON object per line over a unix socket, both directions.

Request:  {"op": "promote", "epoch": 7, "force": false, "accept_data_loss": false}
Reply:    {"ok": true, "result": ...}
      or  {"ok": false, "error": {"type": "UnsafeOperation", "message": "...", ...}}

Errors travel by type name so the client re-raises the same `ReplicationError`
subclass the engine raised (SplitBrain keeps both sides' generation ids).

A client has `REQUEST_DEADLINE` seconds for each request line, whole (however slowly
its bytes trickle in); then its connection is closed. `ControlClient` sends its one
request at once, so only connections nobody uses are cut: without the deadline,
`MAX_CLIENTS` silent connections locked every `drorch repl` command out (attack).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drorch.replication.base import ReplicationError, SplitBrain, StaleEpoch, UnsafeOperation
from drorch.replication.pyrepl.errors import ControlUnreachable as ControlUnreachable
from drorch.replication.pyrepl.listener import Acceptor, unix_listener

log = logging.getLogger("drorch.pyrepl.control")

MAX_REQUEST = 64 * 1024
MAX_CLIENTS = 32  # control connections served at once; more are closed
REQUEST_DEADLINE = 10.0  # seconds for one whole request line
Handler = Callable[[str, dict[str, Any]], Any]
_ERRORS: dict[str, type[ReplicationError]] = {
    "UnsafeOperation": UnsafeOperation,
    "StaleEpoch": StaleEpoch,
    "ReplicationError": ReplicationError,
}


def error_body(exc: Exception) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, SplitBrain):
        body |= {"local": exc.local, "peer": exc.peer}
    return body


def raise_error(body: dict[str, Any]) -> None:
    kind, message = str(body.get("type")), str(body.get("message"))
    if kind == "SplitBrain":
        raise SplitBrain(message, body.get("local") or {}, body.get("peer") or {})
    if kind == "ControlUnreachable":
        raise ControlUnreachable(message)
    raise _ERRORS.get(kind, ReplicationError)(message)


class ControlServer:
    def __init__(self, path: Path, handler: Handler, stop: threading.Event) -> None:
        self.path = path
        self.handler = handler
        self.stop = stop
        self._acceptor: Acceptor | None = None

    def start(self) -> None:
        """Bind the socket. A socket file nobody answers on (a crashed daemon's) is
        replaced; one a live daemon answers on is refused, never taken over."""
        if os.path.exists(self.path):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(2.0)
                try:
                    probe.connect(str(self.path))
                except OSError:
                    os.unlink(self.path)  # stale
                else:
                    raise OSError(errno.EADDRINUSE, "in use by a running pyrepl daemon")
        srv = unix_listener(str(self.path))
        os.chmod(self.path, 0o600)
        self._acceptor = Acceptor(
            srv, self._serve, self.stop, name="pyrepl-ctl", max_active=MAX_CLIENTS
        )
        self._acceptor.start()

    def close(self) -> None:
        self.stop.set()
        if self._acceptor is not None:
            self._acceptor.close()
            self._acceptor = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # ours: only a socket this server bound is removed

    def _serve(self, conn: socket.socket) -> None:
        lines = _Lines(conn)
        try:
            with conn:
                while True:
                    line = lines.next(REQUEST_DEADLINE)
                    if not line:
                        return
                    reply = self._answer(line)
                    conn.settimeout(REQUEST_DEADLINE)
                    conn.sendall(json.dumps(reply, default=str).encode() + b"\n")
        except TimeoutError:
            log.info("control client closed: no whole request in %g s", REQUEST_DEADLINE)
        except OSError as exc:  # the client went away mid-answer: its loss alone
            log.debug("control client gone: %s", exc)

    def _answer(self, line: bytes) -> dict[str, Any]:
        if len(line) > MAX_REQUEST:
            return {"ok": False, "error": {"type": "ReplicationError", "message": "too long"}}
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise ValueError("a request is a JSON object with an 'op' string")
        except ValueError as exc:
            return {"ok": False, "error": {"type": "ReplicationError", "message": str(exc)}}
        op = request.pop("op")
        try:
            return {"ok": True, "result": self.handler(op, request)}
        except (ReplicationError, ValueError, OSError) as exc:
            return {"ok": False, "error": error_body(exc)}


class _Lines:
    """Request lines from one connection, each within a deadline of its own."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self._buf = bytearray()

    def next(self, deadline: float) -> bytes:
        """The next line with its newline (cut at MAX_REQUEST + 1 bytes, which
        `_answer` refuses), b"" at the client's end; TimeoutError after `deadline`."""
        until = time.monotonic() + deadline
        while True:
            end = self._buf.find(b"\n", 0, MAX_REQUEST + 1)
            if end >= 0 or len(self._buf) > MAX_REQUEST:
                size = end + 1 if end >= 0 else MAX_REQUEST + 1
                line = bytes(self._buf[:size])
                del self._buf[:size]
                return line
            left = until - time.monotonic()
            if left <= 0:
                raise TimeoutError("request deadline")
            self.conn.settimeout(left)
            data = self.conn.recv(65536)
            if not data:
                return b""
            self._buf += data


class ControlClient:
    """Talk to one daemon. Each call opens a fresh connection (daemons restart)."""

    def __init__(self, path: Path | str, timeout: float = 120.0) -> None:
        self.path = Path(path)
        self.timeout = timeout

    def call(self, op: str, **args: Any) -> Any:
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:  # pragma: no cover - out of descriptors
            raise ControlUnreachable(str(exc)) from exc
        with sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.path))
                sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
                with sock.makefile("rb") as stream:
                    line = stream.readline()
            except OSError as exc:
                raise ControlUnreachable(f"no pyrepl daemon answers on {self.path}: {exc}") from exc
        if not line:
            raise ControlUnreachable(f"the pyrepl daemon on {self.path} closed the connection")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise_error(reply.get("error") or {})
        return reply.get("result")
