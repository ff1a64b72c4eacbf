"""The metadata sidecar: disk state, generation ids and fencing epoch, written atomically.

One JSON file per backing device (`<backing>.pyrepl-meta` unless `--meta` names one).
Every change goes through `drorch.durable.write_atomic` (temporary file written in
full, fsynced, renamed over the old one, folder fsynced), so a crash leaves either the
old or the new state, never a mix.

Generation ids follow DRBD's UUIDs: `current` names the data generation this disk holds;
`bitmap` is the generation the peer was at when this side started tracking changes in
its dirty bitmap ("0" when not tracking); `history` lists older generations, newest first.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from drorch.durable import write_atomic
from drorch.replication.base import DiskState
from drorch.replication.pyrepl.errors import MetaError as MetaError

META_VERSION = 1
NO_GENERATION = "0"
HISTORY_LENGTH = 4


def new_generation_id() -> str:
    """A fresh random 64-bit generation id, as 16 hex digits."""
    return secrets.token_hex(8)


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
    # a primary's record that its peer's copy is Outdated (fencing resource-only: what
    # lets it acknowledge writes the peer does not have; see freeze.py)
    peer_outdated: bool = False
    # `allow_two_primaries` (dual.py): the peer may be promoted beside this side's
    # primary (sync only). Kept here so a restart keeps the operator's choice.
    two_primaries: bool = False
    # wall-clock seconds since which the peer is recorded Outdated (`peer_outdated`)
    # and since which this disk is Outdated; None when not. Status reports them.
    peer_outdated_since: float | None = None
    outdated_since: float | None = None
    # the replication mode (modeswitch.py). `mode_serial` 0: the mode given at start
    # (the config) rules; above 0: it was switched live, the last switch rules (a
    # restart keeps it) and the side with the higher serial wins at connect.
    # `mode_switching`: an async -> sync switch has not finished (it resumes at start).
    mode: str = ""
    mode_serial: int = 0
    mode_switching: bool = False
    mode_options: dict[str, Any] = field(default_factory=dict)

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
        # the peer starts Inconsistent: nothing of it is current (day 0 needs no fencing)
        return Meta(
            name, size, region_size, node_id, DiskState.UP_TO_DATE, generation,
            peer_outdated=True,
        )  # fmt: skip
    return Meta(name, size, region_size, node_id, DiskState.INCONSISTENT)


_FIELDS = ("name", "size", "region_size", "node_id", "disk", "generation")


def load_meta(path: Path) -> Meta:
    """The sidecar; MetaError saying what is wrong (unreadable, not JSON, a field
    missing or of the wrong kind) and which file."""
    where = f"{path}: unreadable pyrepl metadata"
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise MetaError(f"{where}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise MetaError(f"{where}: not UTF-8 text, so not JSON ({exc.reason})") from exc
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise MetaError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise MetaError(f"{where}: expected a JSON object, found {type(raw).__name__}")
    missing = [f for f in _FIELDS if f not in raw]
    if missing:
        raise MetaError(f"{where}: missing field(s) {', '.join(missing)}")
    field_name = "?"
    try:
        field_name = "disk"
        disk = DiskState(raw["disk"])
        field_name = "generation"
        if not isinstance(raw["generation"], dict):
            raise TypeError("expected an object")
        generation = Generation.from_dict(raw["generation"])
        values: dict[str, Any] = {}
        for field_name, kind in (("size", int), ("region_size", int), ("epoch", int)):
            value = raw.get(field_name, 0)
            if isinstance(value, bool) or not isinstance(value, kind) or value < 0:
                raise TypeError(f"expected a non-negative integer, found {value!r}")
            values[field_name] = value
        field_name = "version"
        version = int(raw.get("version", META_VERSION))
    except (ValueError, TypeError) as exc:
        raise MetaError(f"{where}: field {field_name!r}: {exc}") from exc
    return Meta(
        name=str(raw["name"]),
        size=values["size"],
        region_size=values["region_size"],
        node_id=str(raw["node_id"]),
        disk=disk,
        generation=generation,
        epoch=values["epoch"],
        discard_local=bool(raw.get("discard_local", False)),
        version=version,
        peer_outdated=bool(raw.get("peer_outdated", False)),
        two_primaries=raw.get("two_primaries") is True,
        peer_outdated_since=_seconds(raw.get("peer_outdated_since")),
        outdated_since=_seconds(raw.get("outdated_since")),
        mode=raw["mode"] if raw.get("mode") in ("sync", "async") else "",
        mode_serial=_count(raw.get("mode_serial")),
        mode_switching=raw.get("mode_switching") is True,
        mode_options=dict(raw["mode_options"]) if isinstance(raw.get("mode_options"), dict) else {},
    )


def _seconds(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    return float(value) if ok else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def save_meta(path: Path, meta: Meta) -> None:
    """Atomically and durably replace `path` with `meta` (drorch.durable)."""
    data = json.dumps(meta.as_dict(), indent=1, sort_keys=True).encode()
    write_atomic(path, data)
