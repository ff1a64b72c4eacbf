"""The metadata sidecar: disk state, generation ids and fencing epoch, written atomically.

One JSON file per backing device (`<backing>.pyrepl-meta` unless `--meta` names one).
Every change goes to a temporary file that is fsynced, renamed over the old one, and
the directory is fsynced, so a crash leaves either the old or the new state, never a mix.

Generation ids follow DRBD's UUIDs: `current` names the data generation this disk holds;
`bitmap` is the generation the peer was at when this side started tracking changes in
its dirty bitmap ("0" when not tracking); `history` lists older generations, newest first.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from drorch.replication.base import DiskState, ReplicationError

META_VERSION = 1
NO_GENERATION = "0"
HISTORY_LENGTH = 4


def new_generation_id() -> str:
    """A fresh random 64-bit generation id, as 16 hex digits."""
    return secrets.token_hex(8)


class MetaError(ReplicationError):
    """The sidecar is unreadable or does not belong to this volume."""


@dataclass(frozen=True)
class Generation:
    current: str = NO_GENERATION
    bitmap: str = NO_GENERATION
    history: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"current": self.current, "bitmap": self.bitmap, "history": list(self.history)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Generation:
        return cls(
            str(data.get("current", NO_GENERATION)),
            str(data.get("bitmap", NO_GENERATION)),
            tuple(str(h) for h in data.get("history", ())),
        )

    def diverge(self) -> Generation:
        """Start a new data generation while the peer is not receiving; the old current
        becomes the bitmap generation (once: a second divergence keeps the first base)."""
        base = self.current if self.bitmap == NO_GENERATION else self.bitmap
        return replace(self, current=new_generation_id(), bitmap=base)

    def resync_finished(self) -> Generation:
        """Sync source after a completed resync: the bitmap generation becomes history."""
        if self.bitmap == NO_GENERATION:
            return self
        history = (self.bitmap, *self.history)[:HISTORY_LENGTH]
        return replace(self, bitmap=NO_GENERATION, history=history)

    def adopt(self, source: Generation) -> Generation:
        """Sync target after a completed resync: it now holds the source's generation."""
        return Generation(source.current, NO_GENERATION, source.history)


@dataclass(frozen=True)
class Meta:
    name: str
    size: int
    region_size: int
    node_id: str
    disk: DiskState
    generation: Generation = field(default_factory=Generation)
    epoch: int = 0
    discard_local: bool = False
    version: int = META_VERSION

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["disk"] = self.disk.value
        data["generation"] = self.generation.as_dict()
        return data


def fresh_meta(name: str, size: int, region_size: int, *, primary: bool) -> Meta:
    """A new volume: a primary's disk is the reference copy (UpToDate, a new generation);
    a secondary's is Inconsistent until a first full resync."""
    node_id = secrets.token_hex(8)
    if primary:
        generation = Generation(new_generation_id())
        return Meta(name, size, region_size, node_id, DiskState.UP_TO_DATE, generation)
    return Meta(name, size, region_size, node_id, DiskState.INCONSISTENT)


def load_meta(path: Path) -> Meta:
    try:
        raw = json.loads(path.read_text())
        return Meta(
            name=str(raw["name"]),
            size=int(raw["size"]),
            region_size=int(raw["region_size"]),
            node_id=str(raw["node_id"]),
            disk=DiskState(raw["disk"]),
            generation=Generation.from_dict(raw["generation"]),
            epoch=int(raw.get("epoch", 0)),
            discard_local=bool(raw.get("discard_local", False)),
            version=int(raw.get("version", META_VERSION)),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MetaError(f"{path}: unreadable pyrepl metadata: {exc}") from exc


def save_meta(path: Path, meta: Meta) -> None:
    """Atomically replace `path` with `meta` (write temp, fsync, rename, fsync dir)."""
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps(meta.as_dict(), indent=1, sort_keys=True).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
