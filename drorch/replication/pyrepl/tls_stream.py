"""TLS over a plain socket through `ssl.MemoryBIO`, safe for one reader and one writer.

An `ssl.SSLSocket` must not be read in one thread while another writes (OpenSSL objects
are not thread-safe), and the replication link does exactly that. Here the TLS state
machine only ever runs under a short lock and never blocks inside it: the reader thread
waits on the raw socket without the lock, and every byte TLS wants to send leaves the
outgoing BIO, in order, under the send lock.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Protocol

RECV_CHUNK = 256 * 1024


class Stream(Protocol):
    """What the link needs from a connection: a socket.socket or a TlsStream."""

    def recv_into(self, buffer: memoryview | bytearray, nbytes: int = ..., /) -> int: ...
    def sendall(self, data: bytes, /) -> None: ...
    def settimeout(self, value: float | None, /) -> None: ...
    def shutdown(self, how: int, /) -> None: ...
    def close(self) -> None: ...


class TlsStream:
    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        self.sock = sock
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._in, self._out, server_side=server_side, server_hostname=server_hostname
        )
        self._lock = threading.Lock()  # the TLS object and both BIOs
        self._send_lock = threading.Lock()  # raw bytes leave in the order TLS made them
        self._handshake()

    def _handshake(self) -> None:
        while True:
            try:
                with self._lock:
                    self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._feed()
        self._flush()

    def _feed(self) -> bool:
        data = self.sock.recv(RECV_CHUNK)
        if not data:
            with self._lock:
                self._in.write_eof()
            return False
        with self._lock:
            self._in.write(data)
        return True

    def _flush(self) -> None:
        with self._send_lock:
            with self._lock:
                data = self._out.read()
            if data:
                self.sock.sendall(data)

    # ------------------------------------------------------------------ Stream
    def recv_into(self, buffer: memoryview | bytearray, nbytes: int = 0, /) -> int:
        n = nbytes or len(buffer)
        while True:
            try:
                with self._lock:
                    got = int(self._tls.read(n, buffer))
                return got
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return 0
            self._flush()  # e.g. a TLS 1.3 key update answer
            if not self._feed():
                with self._lock:
                    try:
                        return int(self._tls.read(n, buffer))
                    except (ssl.SSLError, ValueError):
                        return 0

    def sendall(self, data: bytes | bytearray | memoryview, /) -> None:
        with self._send_lock:
            with self._lock:
                self._tls.write(data)
                raw = self._out.read()
            self.sock.sendall(raw)

    def settimeout(self, value: float | None, /) -> None:
        self.sock.settimeout(value)

    def shutdown(self, how: int, /) -> None:
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()

    @property
    def ssl_object(self) -> ssl.SSLObject:
        """For certificate checks right after the handshake (before other threads)."""
        return self._tls

    def version(self) -> str | None:
        with self._lock:
            return self._tls.version()
