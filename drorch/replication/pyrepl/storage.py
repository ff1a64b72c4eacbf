"""The backing file or block device: positional I/O, zeroing, hole detection, digests.

DRBD's `on-io-error detach`: the first I/O error of the backing device detaches it. The
descriptor is let go, `on_failure` tells the engine (which goes Diskless), and every
later call raises `DiskFailed` at once, without touching the device again.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from drorch.replication.pyrepl.errors import DiskFailed as DiskFailed
from drorch.replication.pyrepl.owner import lock_fd
from drorch.replication.pyrepl.pipes import Payload, PipePayload

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_ZERO_CHUNK = bytes(1024 * 1024)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_fallocate = _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int


class Backing:
    """Opens (creating or extending a regular file to `size`) and owns the descriptor."""

    def __init__(
        self,
        path: Path,
        size: int,
        *,
        create: bool = True,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.on_failure = on_failure
        self.detached: str | None = None  # why, once an I/O error detached the disk
        # called with (offset, length) before every write: point-in-time views keep
        # the old contents (drorch.replication.pyrepl.pointintime)
        self.before_write: Callable[[int, int], None] | None = None
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        self.fd = os.open(path, flags, 0o600)
        try:
            lock_fd(self.fd, f"the backing file {path}")
        except BaseException:
            os.close(self.fd)
            raise
        st = os.fstat(self.fd)
        self.is_file = stat.S_ISREG(st.st_mode)
        if self.is_file and st.st_size < size:
            os.ftruncate(self.fd, size)
        elif not self.is_file:
            actual = os.lseek(self.fd, 0, os.SEEK_END)
            if actual < size:
                os.close(self.fd)
                raise ValueError(f"{path}: device has {actual} bytes, volume needs {size}")
        self.size = size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def check(self) -> None:
        """DiskFailed once detached."""
        if self.detached is not None:
            raise DiskFailed(self.detached)

    def fail(self, what: str, exc: OSError) -> DiskFailed:
        """Detach after an I/O error (idempotent); the caller raises what this returns."""
        if self.detached is None:
            self.detached = f"{what} of {self.path} failed: {exc.strerror or exc}"
            fd, self.fd = self.fd, -1
            with contextlib.suppress(OSError):  # let go of the device, whatever it says
                os.close(fd)
            if self.on_failure is not None:
                self.on_failure(self.detached)
        return DiskFailed(self.detached)

    def pread(self, offset: int, length: int) -> bytes:
        self.check()
        try:
            return os.pread(self.fd, length, offset)
        except OSError as exc:
            raise self.fail("read", exc) from exc

    def pwrite(self, offset: int, data: Payload) -> None:
        self.check()
        if self.before_write is not None:
            self.before_write(offset, len(data))
        try:
            if isinstance(data, PipePayload):
                data.to_file(self.fd, offset)
                return
            view = memoryview(data)
            while view:
                written = os.pwrite(self.fd, view, offset)
                view = view[written:]
                offset += written
        except OSError as exc:
            raise self.fail("write", exc) from exc

    def pwrite_durable(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write and make it durable in one system call (RWF_DSYNC: the data and what is
        needed to read it back, like pwrite + fdatasync)."""
        self.check()
        view = memoryview(data)
        if self.before_write is not None:
            self.before_write(offset, len(view))
        try:
            while view:
                written = os.pwritev(self.fd, [view], offset, os.RWF_DSYNC)
                view = view[written:]
                offset += written
        except OSError as exc:
            raise self.fail("durable write", exc) from exc

    def zero(self, offset: int, length: int, *, punch: bool = True) -> None:
        """Make [offset, offset+length) read as zeroes: punch a hole where the file
        system can (unless `punch` is false: NBD's NO_HOLE), else write zeroes."""
        if length <= 0:
            return
        self.check()
        if self.before_write is not None:
            self.before_write(offset, length)
        if self.is_file and punch:
            mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
            if _fallocate(self.fd, mode, offset, length) == 0:
                return
            err = ctypes.get_errno()
            if err not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise self.fail("discard", OSError(err, os.strerror(err), str(self.path)))
        end = offset + length
        while offset < end:
            chunk = min(len(_ZERO_CHUNK), end - offset)
            self.pwrite(offset, memoryview(_ZERO_CHUNK)[:chunk])
            offset += chunk

    def is_hole(self, offset: int, length: int) -> bool:
        """True when the range holds no data extents (reads as zeroes) — only
        answerable for regular files; a device always counts as data."""
        if not self.is_file:
            return False
        self.check()
        try:
            data_at = os.lseek(self.fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return True
            raise self.fail("extent lookup", exc) from exc
        return data_at >= offset + length

    def allocation(self, offset: int, length: int, max_extents: int) -> list[tuple[int, bool]]:
        """Consecutive (length, is_hole) extents from `offset`, covering at most `length`
        bytes in at most `max_extents` steps (SEEK_DATA/SEEK_HOLE). A device, or a file
        system that cannot tell, is all data."""
        self.check()
        end = min(offset + length, self.size)
        if not self.is_file:
            return [(end - offset, False)] if end > offset else []
        out: list[tuple[int, bool]] = []
        pos = offset
        while pos < end and len(out) < max_extents:
            try:
                data_at = os.lseek(self.fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: only a hole up to the end of file
                    raise self.fail("extent lookup", exc) from exc
                data_at = end
            if data_at > pos:
                stop = min(data_at, end)
                out.append((stop - pos, True))
                pos = stop
                continue
            try:
                hole_at = os.lseek(self.fd, pos, os.SEEK_HOLE)
            except OSError as exc:
                raise self.fail("extent lookup", exc) from exc
            stop = min(max(hole_at, pos + 1), end)
            out.append((stop - pos, False))
            pos = stop
        return out

    def sync(self) -> None:
        self.check()
        try:
            os.fdatasync(self.fd)
        except OSError as exc:
            raise self.fail("flush", exc) from exc

    def digest(self, offset: int, length: int) -> str:
        length = min(length, self.size - offset)
        if self.is_hole(offset, length):
            return _zero_digest(length)
        return hashlib.blake2b(self.pread(offset, length), digest_size=16).hexdigest()


_ZERO_DIGESTS: dict[int, str] = {}


def _zero_digest(length: int) -> str:
    if length not in _ZERO_DIGESTS:
        _ZERO_DIGESTS[length] = hashlib.blake2b(bytes(length), digest_size=16).hexdigest()
    return _ZERO_DIGESTS[length]
