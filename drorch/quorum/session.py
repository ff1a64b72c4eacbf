"""One client connection of the quorum daemon: non-blocking TLS socket I/O only.

The session owns its socket, its sans-I/O `ServerProtocol`, and its output buffer. It knows
nothing of grants: it hands every client message to the server (`on_message`) and sends the
frames the server gives it. Deadlines are kept by the server's sweep.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING

from drorch.quorum.protocol import (
    BAD_FRAME,
    ClientMessage,
    ProtocolViolation,
    ServerProtocol,
    error_frame,
)
from drorch.quorum.tls import PinError, peer_fingerprint

if TYPE_CHECKING:
    import asyncio

    from drorch.clock import Clock

log = logging.getLogger("drorch.quorumd")

READ_SIZE = 65536
READS_PER_WAKEUP = 8
MAX_OUTPUT = 1 << 20  # a client that reads nothing gets closed, not buffered forever
DRAIN_SECONDS = 1.0  # after an error frame, read and discard this long before closing


class Stage(Enum):
    HANDSHAKE = "handshake"
    AWAITING_HELLO = "awaiting-hello"
    ESTABLISHED = "established"
    CLOSING = "closing"  # error sent, output flushed, discarding input until EOF/deadline
    CLOSED = "closed"


class Session:
    __slots__ = (
        "_clock",
        "_closed_cb",
        "_loop",
        "_on_message",
        "_out",
        "_protocol",
        "_writing",
        "accepted_at",
        "address",
        "close_at",
        "cluster",
        "fd",
        "fingerprint",
        "last_heard",
        "node",
        "nodes",
        "site",
        "sock",
        "stage",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: ssl.SSLSocket,
        address: str,
        clock: Clock,
        on_message: Callable[[Session, ClientMessage], None],
        on_closed: Callable[[Session, str], None],
    ) -> None:
        self._loop = loop
        self._clock = clock
        now = clock.monotonic()
        self.sock = sock
        self.fd = sock.fileno()
        self.address = address
        self.accepted_at = now
        self.last_heard = now
        self.close_at: float | None = None
        self.stage = Stage.HANDSHAKE
        self.fingerprint = ""
        self.cluster = self.site = self.node = ""
        self.nodes = -1
        self._protocol = ServerProtocol()
        self._out = bytearray()
        self._writing = False
        self._on_message = on_message
        self._closed_cb = on_closed

    def start(self) -> None:
        """Begin the TLS handshake (the ClientHello may already be there)."""
        self._loop.add_reader(self.fd, self._readable)
        self._readable()

    @property
    def authenticated(self) -> bool:
        return self.stage is Stage.ESTABLISHED

    def describe(self) -> str:
        who = f"{self.cluster}/{self.site}/{self.node}" if self.cluster else "(no hello yet)"
        return f"{self.address} {who}"

    # --- input -------------------------------------------------------------------------

    def _handshake(self) -> bool:
        """Advance the TLS handshake; True once it is complete."""
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want_write(False)
            return False
        except ssl.SSLWantWriteError:
            self._want_write(True)
            return False
        except (ssl.SSLError, OSError) as exc:
            self.close(f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}")
            return False
        self._want_write(False)
        try:
            self.fingerprint = peer_fingerprint(self.sock)
        except PinError as exc:  # pragma: no cover - CERT_REQUIRED makes this impossible
            self.close(str(exc))
            return False
        self.stage = Stage.AWAITING_HELLO
        return True

    def _readable(self) -> None:
        if self.stage is Stage.HANDSHAKE and not self._handshake():
            return
        if self.stage is Stage.CLOSING:
            self._discard()
            return
        for _ in range(READS_PER_WAKEUP):
            if self.stage not in (Stage.AWAITING_HELLO, Stage.ESTABLISHED):
                return
            try:
                data = self.sock.recv(READ_SIZE)
            except (ssl.SSLWantReadError, BlockingIOError):
                return
            except ssl.SSLWantWriteError:
                self._want_write(True)
                return
            except (ssl.SSLError, OSError) as exc:
                self.close(f"read failed: {getattr(exc, 'reason', None) or exc}")
                return
            if not data:
                self.close("client closed the connection")
                return
            self.last_heard = self._clock.monotonic()
            for event in self._protocol.receive(data):
                if isinstance(event, ProtocolViolation):
                    self.fail(event.code, event.message)
                    return
                self._on_message(self, event)
                if self.stage is not Stage.ESTABLISHED and self.stage is not Stage.AWAITING_HELLO:
                    return
            if not self.sock.pending() and len(data) < READ_SIZE:
                return

    def _discard(self) -> None:
        try:
            while self.sock.recv(READ_SIZE):
                pass
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self.close("closed after an error")

    # --- output ------------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        if self.stage in (Stage.CLOSING, Stage.CLOSED):
            return
        self._out += frame
        if len(self._out) > MAX_OUTPUT:
            self.close("client does not read its votes (output buffer full)")
            return
        if not self._writing:
            self._flush()

    def _flush(self) -> None:
        while self._out:
            try:
                sent = self.sock.send(self._out)
            except (ssl.SSLWantWriteError, BlockingIOError):
                self._want_write(True)
                return
            except ssl.SSLWantReadError:  # pragma: no cover - no renegotiation in TLS 1.3
                return
            except (ssl.SSLError, OSError) as exc:
                self.close(f"write failed: {getattr(exc, 'reason', None) or exc}")
                return
            del self._out[:sent]
        self._want_write(False)
        if self.stage is Stage.CLOSING:
            self._half_close()

    def _writable(self) -> None:
        if self.stage is Stage.HANDSHAKE:
            self._handshake()
        else:
            self._flush()

    def _want_write(self, on: bool) -> None:
        if on and not self._writing:
            self._loop.add_writer(self.fd, self._writable)
        elif not on and self._writing:
            self._loop.remove_writer(self.fd)
        self._writing = on

    # --- closing -----------------------------------------------------------------------

    def fail(self, code: str, message: str) -> None:
        """Send an `error` frame, then close this connection only."""
        if self.stage in (Stage.CLOSING, Stage.CLOSED):
            return
        log.info("closing %s: %s: %s", self.describe(), code, message)
        if self.stage is Stage.HANDSHAKE:
            self.close(message)
            return
        self._out += error_frame(code or BAD_FRAME, message)
        self.stage = Stage.CLOSING
        self.close_at = self._clock.monotonic() + DRAIN_SECONDS
        self._flush()

    def _half_close(self) -> None:
        """Error frame is out: stop sending, keep discarding input so the peer reads the
        error instead of a reset caused by unread data."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close("peer already gone")

    def close(self, why: str) -> None:
        if self.stage is Stage.CLOSED:
            return
        self.stage = Stage.CLOSED
        self._loop.remove_reader(self.fd)
        if self._writing:
            self._loop.remove_writer(self.fd)
            self._writing = False
        self.sock.close()
        self._closed_cb(self, why)
