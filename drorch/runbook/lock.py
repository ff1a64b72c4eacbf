"""One run per cluster at a time: an flock on `state_dir/locks/CLUSTER.lock`.

The holder writes its run id and pid into the file, so a refused second run can say
which run holds the cluster. The kernel drops the lock when the holder dies (even by
kill -9), so a killed run never leaves a stale lock behind: `resume` takes it again.
The lock is per state directory (per machine); two operators on two machines are kept
apart by the witness, not by this file.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path


class RunLocked(RuntimeError):
    """Another run holds the cluster; `run_id` and `pid` say which (may be empty)."""

    def __init__(self, cluster: str, run_id: str, pid: str) -> None:
        who = f"run {run_id}" if run_id else "another run"
        super().__init__(
            f"{who} (pid {pid or '?'}) is in progress on cluster {cluster!r}; "
            "wait for it, or see `drorch runbook show " + (run_id or "RUN_ID") + "`"
        )
        self.cluster = cluster
        self.run_id = run_id
        self.pid = pid


class RunLock:
    """Held from acquire() until release() (or the process dies)."""

    def __init__(self, state_dir: Path, cluster: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", cluster) or "_"
        self.path = state_dir / "locks" / f"{safe}.lock"
        self.cluster = cluster
        self._fd: int | None = None

    def acquire(self, run_id: str) -> None:
        """Take the lock for `run_id`; RunLocked if another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
            os.close(fd)
            raise RunLocked(
                self.cluster, holder[0] if holder else "", holder[1] if len(holder) > 1 else ""
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{run_id} {os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def holder(self) -> str | None:
        """The run id written by the current holder, None when nobody holds the lock."""
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
                return text[0] if text else ""
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
