"""Point-in-time views of a replica: read-only NBD exports frozen at the moment they were
taken, while replication keeps writing the replica (copy-on-write, like an LVM snapshot).

    view = views.take("drill-1", store=Path("/var/tmp/vol.pit"))   # NBD export vol@drill-1
    views.drop("drill-1")                                          # and its store is gone

Before the backing file is written (a replicated write, a resync, a discard: every write
goes through `Backing`, which calls `before_write`), each chunk of the range that no view
has kept yet is read and kept in the view's store file (sparse, one chunk per chunk of
the volume). A view reads kept chunks from its store and the others from the backing,
so it shows the replica exactly as it was when taken. The replica itself is never
written by a view: views are read-only, and the store is a separate file.

One lock per view orders its reads against the writers' first copies: a reader holds it
while it reads a chunk that is not kept, so a writer cannot overwrite that chunk until
the reader is done, and a chunk is kept before its first overwrite. A write already under
way while the view is taken may or may not be in it, as with a crash (a secondary's
writes come one at a time from its receiver). The store grows by one chunk per chunk
first overwritten after the view was taken, at most to the volume's size (sparse), and
the kept-chunk map costs one byte per 64 KiB of volume (16 MiB for 1 TiB). Views live in the
daemon's memory: a restarted daemon has none (their store files are left for whoever
took them to remove; `drorch drill cleanup` does).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from drorch.replication.base import ReplicationError
from drorch.replication.pyrepl.storage import Backing

LABEL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
CHUNK = 64 * 1024


def check_label(label: str) -> str:
    """`label`, or ReplicationError when it is not a plain name (it names a file too)."""
    if not LABEL.match(label) or label in (".", ".."):
        raise ReplicationError(f"point-in-time label {label!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    return label


class PointInTimeView:
    """One frozen view of `backing` (see the module doc)."""

    def __init__(
        self, volume: str, label: str, backing: Backing, store: Path, taken_at: float,
        chunk: int = CHUNK,
    ) -> None:  # fmt: skip
        self.volume = volume
        self.label = label
        self.backing = backing
        self.store = store
        self.taken_at = taken_at
        self.chunk = chunk
        self.size = backing.size
        self.kept = bytearray((backing.size + chunk - 1) // chunk)  # 1: in the store
        self.lock = threading.Lock()
        self.closed = False
        self.fd = os.open(store, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.ftruncate(self.fd, backing.size)

    @property
    def export(self) -> str:
        """The NBD export name: `VOLUME@LABEL`."""
        return f"{self.volume}@{self.label}"

    @property
    def kept_bytes(self) -> int:
        return sum(self.kept) * self.chunk

    def before_write(self, offset: int, length: int) -> None:
        """Keep the chunks of [offset, offset+length) not kept yet (called before the
        backing is written; a read error of the backing propagates and the write fails)."""
        first, last = offset // self.chunk, (offset + max(length, 1) - 1) // self.chunk
        with self.lock:
            if self.closed:
                return
            for i in range(first, min(last, len(self.kept) - 1) + 1):
                if self.kept[i]:
                    continue
                at = i * self.chunk
                old = self.backing.pread(at, min(self.chunk, self.size - at))
                view = memoryview(old)
                pos = at
                while view:
                    n = os.pwrite(self.fd, view, pos)
                    view, pos = view[n:], pos + n
                self.kept[i] = 1

    def read(self, offset: int, length: int) -> bytes:
        """The bytes as they were when the view was taken."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"read of {length} bytes at {offset} is outside {self.size} bytes")
        out = bytearray()
        pos, end = offset, offset + length
        with self.lock:
            if self.closed:
                raise ReplicationError(f"point-in-time view {self.export} was dropped")
            while pos < end:
                i = pos // self.chunk
                stop = min((i + 1) * self.chunk, end)
                if self.kept[i]:
                    out += os.pread(self.fd, stop - pos, pos)
                else:
                    out += self.backing.pread(pos, stop - pos)
                pos = stop
        return bytes(out)

    def close(self) -> None:
        """Forget the view and remove its store file. Idempotent."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            os.close(self.fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.store)

    def describe(self) -> dict[str, object]:
        return {"label": self.label, "export": self.export, "store": str(self.store),
                "taken_at": self.taken_at, "kept_bytes": self.kept_bytes}  # fmt: skip


@dataclass
class PointInTimeViews:
    """The daemon's views of its replica, by label; installs itself as the backing's
    `before_write` hook while any view exists."""

    volume: str
    backing: Backing
    now: Callable[[], float]
    views: dict[str, PointInTimeView] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, label: str, store: Path) -> PointInTimeView:
        """A new view (or the existing one of that label). ReplicationError when the
        label is not a plain name or the store cannot be made."""
        check_label(label)
        with self._lock:
            if label in self.views:
                return self.views[label]
            try:
                view = PointInTimeView(self.volume, label, self.backing, store, self.now())
            except OSError as exc:
                raise ReplicationError(f"cannot make the store {store}: {exc.strerror}") from exc
            self.views[label] = view
            self.backing.before_write = self._before_write
            return view

    def drop(self, label: str) -> bool:
        """Remove the view and its store; False when there was none."""
        with self._lock:
            view = self.views.pop(label, None)
            if not self.views:
                self.backing.before_write = None
        if view is None:
            return False
        view.close()
        return True

    def get(self, export: str) -> PointInTimeView | None:
        return next((v for v in self.views.values() if v.export == export), None)

    def close(self) -> None:
        for label in list(self.views):
            self.drop(label)

    def _before_write(self, offset: int, length: int) -> None:
        for view in list(self.views.values()):
            view.before_write(offset, length)
