"""Write payloads held in kernel pipes: a large NBD write never passes through Python.

A 1 MiB NBD WRITE would otherwise be copied from the client's socket into a Python
buffer, from there into the page cache, and again into the peer's socket. Instead the
NBD server splices the payload from the client's socket into a pipe (`PipePayload`);
the engine `tee()`s it into a second pipe for the peer (the kernel duplicates page
references, it copies nothing), splices the first into the backing file (the one real
copy, into the page cache) and the session later splices the second into the peer's
socket. The pages are the client's socket buffers: nobody can change them while they
wait in the send queue, so the peer receives exactly what was written here, in order.

Linux only (splice/tee); plain sockets only (TLS must encrypt in user space: the
payload is then read out with `read_all()`). Pipes are pooled and bounded.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import select
import socket
import struct
import threading

from drorch.replication.pyrepl.errors import PipeError as PipeError

F_SETPIPE_SZ = 1031  # Linux fcntl; not exported by Python's fcntl module
PIPE_CAPACITY = 1024 * 1024
MIN_PIPED = 64 * 1024  # below this a recv into memory is cheaper than the system calls
MAX_IDLE = 16
SEND_TIMEOUT = 30.0
SPLICE_F_NONBLOCK = getattr(os, "SPLICE_F_NONBLOCK", 2)

# tee(2) is not in Python's os module
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_tee = _libc.tee
_tee.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint]
_tee.restype = ctypes.c_ssize_t


def _tee_call(fd_in: int, fd_out: int, length: int) -> int:
    n = int(_tee(fd_in, fd_out, length, SPLICE_F_NONBLOCK))
    if n < 0:
        err = ctypes.get_errno()
        if err == errno.EAGAIN:
            raise BlockingIOError(err, os.strerror(err))
        raise OSError(err, os.strerror(err))
    return n


class Pipe:
    """A pipe sized to PIPE_CAPACITY where the system allows it."""

    __slots__ = ("r", "size", "w")

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        self.size = 65536
        with contextlib.suppress(OSError):  # fs.pipe-max-size may be lower
            self.size = fcntl.fcntl(self.w, F_SETPIPE_SZ, PIPE_CAPACITY)

    def close(self) -> None:
        for fd in (self.r, self.w):
            with contextlib.suppress(OSError):
                os.close(fd)


class PipePool:
    """Idle, empty pipes for reuse; at most MAX_IDLE kept open. Thread-safe."""

    def __init__(self) -> None:
        self._idle: list[Pipe] = []
        self._lock = threading.Lock()
        probe = Pipe()
        self.capacity = probe.size
        self._idle.append(probe)
        self._closed = False
        self.open = 1  # pipes alive, idle or holding a payload (for tests and status)

    def get(self) -> Pipe:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            self.open += 1
        return Pipe()

    def put(self, pipe: Pipe, *, empty: bool) -> None:
        with self._lock:
            if empty and not self._closed and len(self._idle) < MAX_IDLE:
                self._idle.append(pipe)
                return
            self.open -= 1
        pipe.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self.open -= len(idle)
        for pipe in idle:
            pipe.close()

    def takes(self, length: int) -> bool:
        return MIN_PIPED <= length <= self.capacity


class PipePayload:
    """`length` bytes in a pipe. Consumed exactly once (`to_file`, `to_socket` or
    `read_all`); `release()` is idempotent and must follow in every case."""

    __slots__ = ("_left", "_pipe", "_pool", "length")

    def __init__(self, pool: PipePool, pipe: Pipe, length: int) -> None:
        self._pool = pool
        self._pipe: Pipe | None = pipe
        self.length = length
        self._left = length

    def __len__(self) -> int:
        return self.length

    @classmethod
    def from_socket(
        cls, pool: PipePool, sock: socket.socket, length: int, prefix: bytes = b""
    ) -> Payload:
        """Exactly `length` bytes: `prefix` (the start of the payload, already read
        from the socket; shorter than the pipe), then the rest from a blocking socket;
        EOFError at its end, TimeoutError when its SO_RCVTIMEO runs out with nothing
        arriving. Usually a PipePayload; a bytearray when the pipe ran out of slots
        first (many small socket buffers: each takes a slot), so nothing blocks on a
        full pipe."""
        payload = cls(pool, pool.get(), 0)
        try:
            pipe = payload._live()
            view = memoryview(prefix)
            while view:  # into an empty pipe larger than the prefix: never blocks
                moved = os.write(pipe.w, view)
                view = view[moved:]
                payload.length += moved
                payload._left += moved
            while payload.length < length:
                try:
                    moved = os.splice(
                        sock.fileno(), pipe.w, length - payload.length, flags=SPLICE_F_NONBLOCK
                    )
                except BlockingIOError:
                    if not _has_room(pipe):
                        return payload._to_memory(sock, length)  # the pipe is full
                    if not _await_data(sock):  # the client stalled mid-payload
                        raise TimeoutError(
                            f"client sent {payload.length} of {length} payload bytes, then stalled"
                        ) from None
                    continue
                if moved == 0:
                    raise EOFError("client closed the connection mid-request")
                payload.length += moved
                # `_left` is always what the pipe holds: if the payload ends early the
                # pipe is not empty, and release() must not hand it back to the pool
                # (its stale bytes would start the next client's write).
                payload._left += moved
            return payload
        except BaseException:
            payload.release()
            raise

    def _to_memory(self, sock: socket.socket, length: int) -> bytearray:
        self._left = self.length
        buf = bytearray(length)
        buf[: self.length] = self.read_all()
        view = memoryview(buf)
        got = self.length
        self.release()
        while got < length:
            try:
                k = sock.recv_into(view[got:], length - got)
            except BlockingIOError:  # SO_RCVTIMEO ran out
                raise TimeoutError(
                    f"client sent {got} of {length} payload bytes, then stalled"
                ) from None
            if k == 0:
                raise EOFError("client closed the connection mid-request")
            got += k
        return buf

    def _live(self) -> Pipe:
        if self._pipe is None:
            raise PipeError("payload already released")
        return self._pipe

    def tee(self) -> PipePayload:
        """A second payload with the same bytes, sharing the pages; this one is intact."""
        src = self._live()
        if self._left != self.length:
            raise PipeError("tee of a partly consumed payload")
        dup = PipePayload(self._pool, self._pool.get(), self.length)
        try:
            copied = _tee_call(src.r, dup._live().w, self.length)
            if copied != self.length:  # the kernel duplicates from the start each call
                raise PipeError(f"tee moved {copied} of {self.length} bytes")
            return dup
        except BaseException:
            dup.release()
            raise

    def to_file(self, fd: int, offset: int) -> None:
        pipe = self._live()
        while self._left:
            moved = os.splice(pipe.r, fd, self._left, offset_dst=offset)
            if moved == 0:
                raise PipeError("splice into the backing file moved nothing")
            offset += moved
            self._left -= moved

    def to_socket(self, sock_fd: int, timeout: float = SEND_TIMEOUT) -> None:
        """Splice into a socket, blocking or not (a timeout-mode Python socket is
        non-blocking underneath: wait for room with poll)."""
        pipe = self._live()
        poller: select.poll | None = None
        while self._left:
            try:
                moved = os.splice(pipe.r, sock_fd, self._left)
            except BlockingIOError:
                if poller is None:
                    poller = select.poll()
                    poller.register(sock_fd, select.POLLOUT)
                if not poller.poll(timeout * 1000):
                    raise TimeoutError(f"peer accepted no data for {timeout:g} s") from None
                continue
            if moved == 0:
                raise PipeError("splice into the socket moved nothing")
            self._left -= moved

    def read_all(self) -> bytes:
        pipe = self._live()
        chunks = []
        while self._left:
            chunk = os.read(pipe.r, self._left)
            if not chunk:
                raise PipeError("pipe ended early")
            chunks.append(chunk)
            self._left -= len(chunk)
        return b"".join(chunks)

    def release(self) -> None:
        """Give the pipe back: to the pool only if it is empty, else it is closed."""
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            self._pool.put(pipe, empty=self._left == 0)


Payload = bytes | bytearray | memoryview | PipePayload


def _has_room(pipe: Pipe) -> bool:
    """The pipe takes more now, so a splice that would block waited for the socket."""
    poller = select.poll()
    poller.register(pipe.w, select.POLLOUT)
    return bool(poller.poll(0))


def _await_data(sock: socket.socket) -> bool:
    """Wait up to the socket's SO_RCVTIMEO (forever if unset) for data to read. A TCP
    splice has already waited that long (it honours SO_RCVTIMEO); a unix-socket splice
    does not wait at all (SPLICE_F_NONBLOCK also applies to the socket there). So a
    stalled client is detected after one to two payload timeouts."""
    seconds, micros = struct.unpack(
        "ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
    )
    timeout_ms = seconds * 1000 + micros // 1000 if seconds or micros else -1
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(timeout_ms))


def tee_or_copy(payload: PipePayload) -> tuple[Payload, Payload]:
    """(for the local write, for the peer): two pipes sharing pages, or, when the
    kernel cannot tee it whole, one copy in memory used for both."""
    try:
        return payload, payload.tee()
    except (PipeError, BlockingIOError):
        data = payload.read_all()
        payload.release()
        return data, data


def release(data: object) -> None:
    if isinstance(data, PipePayload):
        data.release()
