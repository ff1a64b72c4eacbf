"""Socket-to-file copies without passing through Python: `splice(2)` via a pipe.

A secondary applying a large DATA frame would otherwise copy it from the socket into a
Python buffer and again into the page cache; splice moves the socket's pages into a pipe
and from the pipe into the file, which saves a copy and a trip through the interpreter
per chunk. Plain TCP only (TLS has to decrypt in user space).
"""

from __future__ import annotations

import os
import select

from drorch.replication.pyrepl.errors import FileSideError as FileSideError
from drorch.replication.pyrepl.pipes import Pipe

MIN_SPLICE = 64 * 1024  # below this a plain recv is cheaper than three system calls


class Splicer:
    def __init__(self) -> None:
        self._pipe = Pipe()
        self._r, self._w = self._pipe.r, self._pipe.w
        self.size = self._pipe.size

    def close(self) -> None:
        self._pipe.close()

    def socket_to_file(
        self,
        sock_fd: int,
        file_fd: int,
        offset: int,
        length: int,
        timeout: float,
        read_ahead: memoryview | None = None,
    ) -> None:
        """Move exactly `length` bytes to the file at `offset`: first `read_ahead` (the
        start of the payload, already received into memory), then the rest from the
        socket. TimeoutError when the socket stays silent for `timeout`; EOFError at
        its end."""
        remaining = length
        if read_ahead is not None:
            view = read_ahead
            try:
                while view:
                    written = os.pwrite(file_fd, view, offset)
                    view = view[written:]
                    offset += written
            except OSError as exc:  # the disk's fault, not the link's
                raise FileSideError(exc) from exc
            remaining -= len(read_ahead)
        poller = select.poll()
        poller.register(sock_fd, select.POLLIN)
        while remaining:
            try:
                moved = os.splice(sock_fd, self._w, min(remaining, self.size))
            except BlockingIOError:
                if not poller.poll(timeout * 1000):
                    raise TimeoutError(f"peer silent for {timeout:g} s") from None
                continue
            if moved == 0:
                raise EOFError("peer closed the connection")
            left = moved
            while left:
                try:
                    written = os.splice(self._r, file_fd, left, offset_dst=offset)
                except OSError as exc:  # the disk's fault, not the link's
                    raise FileSideError(exc) from exc
                offset += written
                left -= written
            remaining -= moved
