"""Reading the replication link through one buffer: fewer receives per frame.

A 4 KiB sync write used to cost its secondary two receives (header, then payload), and
each receive on a timeout-mode socket a poll() before it. Here one receive asks for as
much as the buffer holds, so a small frame's header and payload arrive together, and so
may the frames queued behind it (acknowledgements, async writes). A view returned by
`take()` is valid until the next call: the receiver applies a frame before reading the
next one. Bytes of a large payload that were read ahead are handed to the caller
(`take_buffered`) before it splices the rest straight from the socket.

The socket is blocking with kernel-side timeouts (`kernel_timeouts`): SO_RCVTIMEO and
SO_SNDTIMEO bound every receive and send without a poll() per call, and a receive that
runs out raises TimeoutError as before.
"""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drorch.replication.pyrepl.tls_stream import Stream

# A payload up to this size is served from the buffer. Small on purpose: the start of a
# large payload read ahead is copied through user space, the rest is spliced.
READ_AHEAD = 16 * 1024


def kernel_timeouts(sock: socket.socket, seconds: float) -> None:
    """Blocking mode, every receive and send bounded by `seconds` in the kernel."""
    sock.settimeout(None)
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    for opt in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
        sock.setsockopt(socket.SOL_SOCKET, opt, timeval)


def send_timeout(sock: socket.socket) -> float:
    """The socket's send bound in seconds: its Python timeout, else SO_SNDTIMEO; 0: none."""
    timeout = sock.gettimeout()
    if timeout:
        return float(timeout)
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16)
    whole, micros = struct.unpack("ll", raw)
    return float(whole + micros / 1e6)


def raw_socket(stream: Stream) -> socket.socket | None:
    """The TCP socket under a Stream (a TlsStream keeps it as `.sock`)."""
    if isinstance(stream, socket.socket):
        return stream
    inner = getattr(stream, "sock", None)
    return inner if isinstance(inner, socket.socket) else None


class FrameReader:
    def __init__(self, sock: Stream, capacity: int = READ_AHEAD) -> None:
        self._sock = sock
        self._buf = bytearray(capacity)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not taken yet."""
        return self._end - self._start

    def _recv(self, view: memoryview) -> int:
        try:
            got = self._sock.recv_into(view, len(view))
        except BlockingIOError:  # SO_RCVTIMEO ran out with nothing received
            raise TimeoutError("receive timed out") from None
        if got == 0:
            raise EOFError("peer closed the connection")
        return got

    def take(self, n: int) -> memoryview:
        """The next `n` bytes (n <= capacity), as a view into the buffer."""
        if n > len(self._buf):
            raise ValueError(f"take({n}) exceeds the {len(self._buf)}-byte buffer")
        if self._end - self._start < n:
            if self._start + n > len(self._buf):  # compact: the rest moves to the front
                held = self._end - self._start
                # a copy first: the two ranges may overlap (memcpy underneath)
                self._buf[:held] = bytes(self._view[self._start : self._end])
                self._start, self._end = 0, held
            while self._end - self._start < n:
                self._end += self._recv(self._view[self._end :])
        view = self._view[self._start : self._start + n]
        self._start += n
        if self._start == self._end:
            self._start = self._end = 0
        return view

    def take_buffered(self, most: int) -> memoryview:
        """Up to `most` bytes already received (possibly none), without receiving."""
        n = min(most, self._end - self._start)
        view = self._view[self._start : self._start + n]
        self._start += n
        if self._start == self._end:
            self._start = self._end = 0
        return view

    def read_into(self, dest: memoryview) -> None:
        """Fill `dest` (any size): what is buffered first, then straight from the socket."""
        head = self.take_buffered(len(dest))
        got = len(head)
        dest[:got] = head
        while got < len(dest):
            got += self._recv(dest[got:])
