"""Socket-to-file copies without passing through Python: `splice(2)` via a pipe.

A secondary applying a large DATA frame would otherwise copy it from the socket into a
Python buffer and again into the page cache; splice moves the socket's pages into a pipe
and from the pipe into the file, which saves a copy and a trip through the interpreter
per chunk. Plain TCP only (TLS has to decrypt in user space).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select

F_SETPIPE_SZ = 1031  # Linux fcntl; not exported by Python's fcntl module
PIPE_SIZE = 1024 * 1024
MIN_SPLICE = 64 * 1024  # below this a plain recv is cheaper than three system calls


class Splicer:
    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        self.size = 65536
        with contextlib.suppress(OSError):  # fs.pipe-max-size may be lower
            self.size = fcntl.fcntl(self._w, F_SETPIPE_SZ, PIPE_SIZE)

    def close(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def socket_to_file(
        self, sock_fd: int, file_fd: int, offset: int, length: int, timeout: float
    ) -> None:
        """Move exactly `length` bytes from the socket to the file at `offset`.
        TimeoutError when the socket stays silent for `timeout`; EOFError at its end."""
        poller = select.poll()
        poller.register(sock_fd, select.POLLIN)
        remaining = length
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
                written = os.splice(self._r, file_fd, left, offset_dst=offset)
                offset += written
                left -= written
            remaining -= moved
