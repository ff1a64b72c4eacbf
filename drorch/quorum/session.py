"""One client connection of the quorum daemon: non-blocking socket + TLS in memory BIOs.

The session owns its socket, its TLS state (`SSLObject` over two `MemoryBIO`s, so one
`recv` takes in whatever records arrived and one `send` puts out every record we made:
two system calls per heartbeat), its sans-I/O `ServerProtocol`, and its output buffer.
It knows nothing of grants: it hands every client message to the server (`on_message`)
and sends the frames the server gives it. Deadlines are kept by the server's sweep.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, cast

from drorch.quorum.messages import BAD_FRAME, ClientMessage, ProtocolViolation
from drorch.quorum.protocol import ServerProtocol, error_frame
from drorch.quorum.tls import PinError, peer_fingerprint

if TYPE_CHECKING:
    import asyncio

    from drorch.clock import Clock

log = logging.getLogger("drorch.quorumd")

READ_SIZE = 65536
MAX_OUTPUT = 1 << 20  # a client that reads nothing gets closed, not buffered forever
DRAIN_SECONDS = 1.0  # after an error frame, read and discard this long before closing
# one read buffer for every session (one event-loop thread): no allocation per read;
# the TLS input BIO copies what it is given before the next read
_READ_VIEW = memoryview(bytearray(READ_SIZE))
_PLAIN = bytearray(READ_SIZE)  # decrypted bytes, likewise copied by the frame decoder
_PLAIN_VIEW = memoryview(_PLAIN)


class Stage(Enum):
    HANDSHAKE = "handshake"
    AWAITING_HELLO = "awaiting-hello"
    ESTABLISHED = "established"
    CLOSING = "closing"  # error sent, output flushed, discarding input until EOF/deadline
    CLOSED = "closed"


class Session:
    __slots__ = (
        "_bio_in",
        "_bio_out",
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
        "frames",
        "frames_since",
        "last_heard",
        "node",
        "nodes",
        "raw",
        "received_at",
        "site",
        "stage",
        "tls",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        raw: socket.socket,
        context: ssl.SSLContext,
        address: str,
        clock: Clock,
        on_message: Callable[[Session, ClientMessage], None],
        on_closed: Callable[[Session, str], None],
    ) -> None:
        self._loop = loop
        self._clock = clock
        now = clock.monotonic()
        self.raw = raw
        self.fd = raw.fileno()
        self._bio_in = ssl.MemoryBIO()
        self._bio_out = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self._bio_in, self._bio_out, server_side=True)
        self.address = address
        self.accepted_at = now
        self.last_heard = now  # the last complete frame (idle deadline)
        self.received_at = now  # when the bytes being handled arrived (grant time)
        self.frames = 0  # frames since `frames_since` (flood limit)
        self.frames_since = now
        self.close_at: float | None = None
        self.stage = Stage.HANDSHAKE
        self.fingerprint = ""
        self.cluster = self.site = self.node = ""
        self.nodes = -1
        self._protocol = ServerProtocol()
        self._out = bytearray()  # TLS records not yet taken by the socket
        self._writing = False
        self._on_message = on_message
        self._closed_cb = on_closed

    def start(self) -> None:
        """Begin serving (the ClientHello may already be there)."""
        self._loop.add_reader(self.fd, self._readable)
        self._readable()

    @property
    def authenticated(self) -> bool:
        return self.stage is Stage.ESTABLISHED

    def describe(self) -> str:
        who = f"{self.cluster}/{self.site}/{self.node}" if self.cluster else "(no hello yet)"
        return f"{self.address} {who}"

    # --- input -------------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            n = self.raw.recv_into(_READ_VIEW, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(f"read failed: {exc}")
            return
        if not n:
            self.close("client closed the connection")
            return
        if self.stage is Stage.CLOSING:
            return  # discarding until EOF or the drain deadline
        self._bio_in.write(_READ_VIEW[:n])
        if self.stage is Stage.HANDSHAKE and not self._handshake():
            return
        self.received_at = self._clock.monotonic()
        self._decrypt()

    def _handshake(self) -> bool:
        """Advance the TLS handshake; True once it is complete."""
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self._pump()
            return False
        except ssl.SSLError as exc:
            self._pump()  # the alert tells the client why
            self.close(f"TLS handshake failed: {exc.reason or exc}")
            return False
        try:
            self.fingerprint = peer_fingerprint(self.tls)
        except PinError as exc:  # pragma: no cover - CERT_REQUIRED makes this impossible
            self.close(str(exc))
            return False
        self.stage = Stage.AWAITING_HELLO
        self._pump()  # session tickets
        return True

    def _decrypt(self) -> None:
        while self.stage is Stage.AWAITING_HELLO or self.stage is Stage.ESTABLISHED:
            try:
                # with a buffer, read() returns a count (typeshed says bytes)
                n = cast(int, self.tls.read(READ_SIZE, _PLAIN))
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.close("client closed the TLS session")
                return
            except ssl.SSLError as exc:
                self.close(f"TLS error: {exc.reason or exc}")
                return
            if not n:
                self.close("client closed the TLS session")
                return
            events = self._protocol.receive(_PLAIN_VIEW[:n])
            if events:
                self.last_heard = self.received_at
                self.frames += len(events)
            for event in events:
                if isinstance(event, ProtocolViolation):
                    self.fail(event.code, event.message)
                    return
                self._on_message(self, event)
                if self.stage is not Stage.ESTABLISHED and self.stage is not Stage.AWAITING_HELLO:
                    return
            if not self._bio_in.pending and not self.tls.pending():
                break
        if self._bio_out.pending:
            self._pump()

    # --- output ------------------------------------------------------------------------

    def send(self, frame: bytes) -> None:
        """Encrypt one frame and hand it to the socket (buffering what it cannot take)."""
        if self.stage is Stage.CLOSING or self.stage is Stage.CLOSED:
            return
        try:
            self.tls.write(frame)
        except ssl.SSLError as exc:
            self.close(f"TLS error: {exc.reason or exc}")
            return
        if self._out or self._writing:
            self._pump()
            return
        record = self._bio_out.read()  # the common case: straight to an idle socket
        try:
            sent = self.raw.send(record)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.close(f"write failed: {exc}")
            return
        if sent < len(record):
            self._out += record[sent:]
            self._want_write(True)

    def _pump(self) -> None:
        """Move encrypted records from the TLS object to the socket."""
        if self._bio_out.pending:
            self._out += self._bio_out.read()
        if len(self._out) > MAX_OUTPUT:
            self.close("client does not read its votes (output buffer full)")
            return
        if not self._writing:
            self._flush()

    def _flush(self) -> None:
        out = self._out
        while out:
            try:
                sent = self.raw.send(out)
            except (BlockingIOError, InterruptedError):
                self._want_write(True)
                return
            except OSError as exc:
                self.close(f"write failed: {exc}")
                return
            del out[:sent]
        self._want_write(False)
        if self.stage is Stage.CLOSING:
            self._half_close()

    def _want_write(self, on: bool) -> None:
        if on and not self._writing:
            self._loop.add_writer(self.fd, self._flush)
        elif not on and self._writing:
            self._loop.remove_writer(self.fd)
        self._writing = on

    # --- closing -----------------------------------------------------------------------

    def fail(self, code: str, message: str) -> None:
        """Send an `error` frame, then close this connection only."""
        if self.stage is Stage.CLOSING or self.stage is Stage.CLOSED:
            return
        log.info("closing %s: %s: %s", self.describe(), code, message)
        if self.stage is Stage.HANDSHAKE:
            self.close(message)
            return
        try:
            self.tls.write(error_frame(code or BAD_FRAME, message))
        except ssl.SSLError:
            self.close(message)
            return
        self.stage = Stage.CLOSING
        self.close_at = self._clock.monotonic() + DRAIN_SECONDS
        self._out += self._bio_out.read()
        if not self._writing:
            self._flush()

    def _half_close(self) -> None:
        """The error frame is out: stop sending, keep discarding input so the peer reads
        the error instead of a reset caused by unread data."""
        try:
            self.raw.shutdown(socket.SHUT_WR)
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
        self.raw.close()
        self._closed_cb(self, why)
