"""One owner per replica: a daemon holds an exclusive lock on its volume's metadata
(a `<meta>.lock` file beside it: the metadata itself is replaced by rename, so its inode
changes) and on the backing file, for as long as it runs. A second daemon on either is
refused at start, with the first one's pid; the first keeps serving.

flock(2) locks belong to the open file description: they vanish when the daemon exits,
however it exits (kill -9 included), so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from drorch.replication.pyrepl.errors import ReplicaInUse as ReplicaInUse


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text().strip() or "0")
        if pid:
            return f" (pid {pid})"
    return ""


def lock_fd(fd: int, what: str, pid_file: Path | None = None) -> None:
    """Take the exclusive lock on `fd` or raise ReplicaInUse naming `what`."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(pid_file) if pid_file is not None else ""
        raise ReplicaInUse(
            f"{what} is in use by another pyrepl daemon{holder}; refusing to start a second"
            " owner of the same replica"
        ) from None


class OwnerLock:
    def __init__(self, meta_file: Path) -> None:
        self.path = meta_file.with_name(meta_file.name + ".lock")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            lock_fd(self.fd, f"the replica described by {meta_file}", self.path)
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(self.fd)
            raise

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the lock
            self.fd = -1
