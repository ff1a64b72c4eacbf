"""The simulated hypervisor's state: one small JSON file per site, locked and replaced
atomically so a crash never leaves half a file and two processes never interleave.

File layout (`<state_dir>/sim-<site>.json`)::

    {"format": 1, "site": "A",
     "vms": {"web": {"xml": "<domain>...</domain>", "state": "running"}}}
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drorch.virt.base import HypervisorError, VMState

_READ_CACHE: dict[Path, tuple[tuple[int, int, int], Records]] = {}
FORMAT = 1
STATES = frozenset(s.value for s in VMState if s is not VMState.UNDEFINED)

Records = dict[str, dict[str, str]]


class SimStateError(HypervisorError):
    """The state file is unreadable or not ours."""


class SimStateStore:
    """The VM records of one site."""

    def __init__(self, state_dir: Path, site: str) -> None:
        self.state_dir = state_dir
        self.site = site
        self.path = state_dir / f"sim-{site}.json"
        self.lock_path = state_dir / f"sim-{site}.lock"
        self.down_path = state_dir / f"sim-{site}.down"

    @property
    def exists(self) -> bool:
        return self.path.exists()

    @property
    def is_down(self) -> bool:
        """The site is simulated as lost (a marker file, so every process sees it)."""
        return self.down_path.exists()

    def set_down(self, down: bool) -> None:
        if down:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.down_path.touch()
        else:
            self.down_path.unlink(missing_ok=True)

    def _load(self) -> Records:
        _READ_CACHE.pop(self.path, None)
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data: Any = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SimStateError(f"{self.path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise SimStateError(f"{self.path}: not a drorch sim state file (format {FORMAT})")
        vms = data.get("vms")
        if not isinstance(vms, dict) or not all(
            isinstance(r, dict) and isinstance(r.get("xml"), str) and r.get("state") in STATES
            for r in vms.values()
        ):
            raise SimStateError(f"{self.path}: malformed 'vms' table")
        return {str(k): {"xml": v["xml"], "state": v["state"]} for k, v in vms.items()}

    def _save(self, records: Records) -> None:
        payload = json.dumps(
            {"format": FORMAT, "site": self.site, "vms": dict(sorted(records.items()))},
            indent=2,
        )
        fd, tmp = tempfile.mkstemp(prefix=f".sim-{self.site}.", dir=self.state_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(payload + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def read(self) -> Records:
        """A snapshot of the records (no lock needed: files are replaced atomically).
        Parsed once per version of the file: a replaced file has a new inode, so
        (inode, mtime, size) tells whether the cached parse still holds."""
        return {k: dict(v) for k, v in self._cached().items()}

    def get(self, vm: str) -> dict[str, str] | None:
        """One VM's record (a copy), or None: what read().get(vm) gives, without copying
        every record."""
        record = self._cached().get(vm)
        return None if record is None else dict(record)

    def _cached(self) -> Records:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = _READ_CACHE.get(self.path)
        if cached is None or cached[0] != key:
            cached = (key, self._load())
            _READ_CACHE[self.path] = cached
        return cached[1]

    @contextlib.contextmanager
    def update(self) -> Iterator[Records]:
        """Lock, load, let the caller change the records, then write them atomically.
        Nothing is written if the body raises."""
        with self._locked():
            records = self._load()
            yield records
            self._save(records)

    def create_if_missing(self, initial: Records) -> bool:
        """Write `initial` if the file does not exist yet; True if it was created."""
        with self._locked():
            if self.path.exists():
                return False
            self._save(initial)
            return True


@contextlib.contextmanager
def update_both(first: SimStateStore, second: SimStateStore) -> Iterator[tuple[Records, Records]]:
    """Update two sites' records together (a migration's hand-over), locking in path
    order so two opposite migrations cannot deadlock."""
    ordered = sorted([first, second], key=lambda s: str(s.path))
    with ordered[0].update() as r0, ordered[1].update() as r1:
        by_store = {id(ordered[0]): r0, id(ordered[1]): r1}
        yield by_store[id(first)], by_store[id(second)]
