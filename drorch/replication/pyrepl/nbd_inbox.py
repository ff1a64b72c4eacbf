"""Reading one NBD client's requests: headers and small payloads through one buffer.

A client sends a WRITE's header and payload together; receiving them with one call
instead of two saves a system call on every small write (the 4 KiB sync write is the
latency everyone measures). One receive asks for at most a header and a payload just
of a few KiB, so a large write's payload is mostly still in the socket: the few bytes
read ahead go into its pipe first (`PipePayload.from_socket(prefix=...)`).

The socket is blocking with SO_RCVTIMEO = the payload timeout. Between requests a
client may be silent for as long as it likes (until the server stops); once a request
has begun, a receive that runs out raises TimeoutError (the client stalled mid-request).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from drorch.replication.pyrepl import nbd_proto as nbd
from drorch.replication.pyrepl.pipes import Payload, PipePayload, PipePool

READ_AHEAD = 16 * 1024  # a header and a 4 KiB payload, and a few more behind them


class NbdInbox:
    def __init__(
        self,
        conn: socket.socket,
        pipes: PipePool | None,
        stop: threading.Event,
        payload_timeout: float,
        begin: Callable[[], bool] = lambda: True,
    ) -> None:
        """`begin()`: a request's first byte is here (the connection is busy from now, so
        the slot keeper will not evict it); False: the connection lost its slot
        meanwhile and must stop (EOFError)."""
        self.begin = begin
        self.conn = conn
        self.pipes = pipes  # None: payloads stay in memory (unix sockets)
        self.stop = stop
        self.payload_timeout = payload_timeout
        self._buf = bytearray(READ_AHEAD)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    def _fill(self, n: int, *, idle: bool) -> None:
        """At least `n` (<= READ_AHEAD) bytes buffered. `idle`: waiting for a request's
        first byte, which may take any time."""
        if self._start + n > len(self._buf):
            held = self._end - self._start
            self._buf[:held] = bytes(self._view[self._start : self._end])  # may overlap
            self._start, self._end = 0, held
        while self._end - self._start < n:
            try:
                k = self.conn.recv_into(self._view[self._end :])
            except BlockingIOError:  # SO_RCVTIMEO ran out with nothing received
                got = self._end - self._start
                if idle and got == 0 and not self.stop.is_set():
                    continue
                raise TimeoutError(
                    f"client sent {got} of {n} bytes of a request, then nothing for"
                    f" {self.payload_timeout:g} s"
                ) from None
            if k == 0:
                raise EOFError("client closed the connection")
            if idle and self._end == self._start:
                self._begun()
            self._end += k

    def _begun(self) -> None:
        if not self.begin():
            raise EOFError("connection closed to give its slot to a new client")

    def _take(self, n: int) -> memoryview:
        view = self._view[self._start : self._start + n]
        self._start += n
        if self._start == self._end:
            self._start = self._end = 0
        return view

    def header(self) -> bytes:
        """The next request header (28 bytes)."""
        if self._end > self._start:  # pipelined: its first bytes are already here
            self._begun()
        self._fill(nbd.REQUEST.size, idle=True)
        return bytes(self._take(nbd.REQUEST.size))

    def payload(self, length: int) -> Payload:
        """A WRITE's payload: in a pipe when large, else a buffer of its own."""
        buffered = min(length, self._end - self._start)
        if self.pipes is not None and self.pipes.takes(length):
            prefix = bytes(self._take(buffered))
            return PipePayload.from_socket(self.pipes, self.conn, length, prefix=prefix)
        if length <= len(self._buf):
            self._fill(length, idle=False)
            return bytearray(self._take(length))
        out = bytearray(length)
        view = memoryview(out)
        view[:buffered] = self._take(buffered)
        got = buffered
        while got < length:
            try:
                k = self.conn.recv_into(view[got:], length - got)
            except BlockingIOError:
                raise TimeoutError(
                    f"client sent {got} of {length} bytes of a request, then nothing for"
                    f" {self.payload_timeout:g} s"
                ) from None
            if k == 0:
                raise EOFError("client closed the connection")
            got += k
        return out
