"""The quorum daemon's durable state: per-cluster epoch and holder, and the maxima of the
lease and switch delay ever served (restart grace is derived from them).

Writes are atomic and durable: a temporary file in the same folder, fsync, rename over the
state file, fsync the folder. A missing or unreadable state file is an error, never "start
fresh": a lost state would let epochs go backwards (`--init` creates a fresh one).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drorch.durable import write_atomic
from drorch.quorum.grants import DurableLease
from drorch.quorum.outdates import OutdateRecord

FORMAT = 1


class StateError(Exception):
    """The state file is missing, unreadable, or not a drorch quorum state."""


@dataclass
class QuorumState:
    max_lease_ms: int
    max_switch_delay_ms: int
    clusters: dict[str, DurableLease] = field(default_factory=dict)
    # cluster -> volume -> only this site's copy is current, since this epoch
    outdates: dict[str, dict[str, OutdateRecord]] = field(default_factory=dict)
    outdate_serial: int = 0  # the last record serial given out (outdates.py): never reused

    def to_json(self) -> dict[str, Any]:
        clusters: dict[str, Any] = {}
        for name, d in sorted(self.clusters.items()):
            entry: dict[str, Any] = {"epoch": d.epoch, "holder": d.holder}
            records = self.outdates.get(name)
            if records:
                entry["current_only"] = {
                    v: {"site": r.site, "epoch": r.epoch, "serial": r.serial}
                    for v, r in sorted(records.items())
                }
            clusters[name] = entry
        return {
            "format": FORMAT,
            "max_lease_ms": self.max_lease_ms,
            "max_switch_delay_ms": self.max_switch_delay_ms,
            "clusters": clusters,
            "outdate_serial": self.outdate_serial,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> QuorumState:
        def bad(why: str) -> StateError:
            return StateError(f"{where}: not a valid quorum state: {why}")

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise bad(f"expected an object with format {FORMAT}")
        lease, delay = data.get("max_lease_ms"), data.get("max_switch_delay_ms")
        for key, value in (("max_lease_ms", lease), ("max_switch_delay_ms", delay)):
            if type(value) is not int or value < 0:
                raise bad(f"{key} must be a non-negative integer")
        raw = data.get("clusters")
        if not isinstance(raw, dict):
            raise bad("clusters must be an object")
        clusters: dict[str, DurableLease] = {}
        outdates: dict[str, dict[str, OutdateRecord]] = {}
        for name, entry in raw.items():
            if not isinstance(entry, dict):
                raise bad(f"cluster {name!r} must be an object")
            epoch, holder = entry.get("epoch"), entry.get("holder")
            if type(epoch) is not int or epoch < 0:
                raise bad(f"cluster {name!r}: epoch must be a non-negative integer")
            if holder is not None and not isinstance(holder, str):
                raise bad(f"cluster {name!r}: holder must be a string or null")
            clusters[name] = DurableLease(epoch, holder)
            records = _records(entry.get("current_only", {}), name, bad)
            if records:
                outdates[name] = records
        serial = data.get("outdate_serial", 0)  # absent in states written before serials
        if type(serial) is not int or serial < 0:
            raise bad("outdate_serial must be a non-negative integer")
        assert isinstance(lease, int) and isinstance(delay, int)
        return cls(lease, delay, clusters, outdates, serial)


def _records(raw: Any, cluster: str, bad: Callable[[str], StateError]) -> dict[str, OutdateRecord]:
    if not isinstance(raw, dict):
        raise bad(f"cluster {cluster!r}: current_only must be an object")
    records: dict[str, OutdateRecord] = {}
    for volume, rec in raw.items():
        site = rec.get("site") if isinstance(rec, dict) else None
        epoch = rec.get("epoch") if isinstance(rec, dict) else None
        serial = rec.get("serial", 0) if isinstance(rec, dict) else None
        if not isinstance(site, str) or not site or type(epoch) is not int or epoch < 0:
            raise bad(f"cluster {cluster!r}: record of {volume!r} needs a site and an epoch")
        if type(serial) is not int or serial < 0:
            raise bad(f"cluster {cluster!r}: record of {volume!r}: bad serial")
        records[volume] = OutdateRecord(site, epoch, serial)
    return records


def read_state(path: Path) -> QuorumState:
    """Load the state; StateError when it is missing, unreadable or malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise StateError(
            f"{path}: state file does not exist; start once with --init to create a fresh "
            "state (only for a witness that never served: a lost state lets epochs go back)"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"{path}: cannot read the state file: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"{path}: state file is not valid JSON: {exc}") from exc
    return QuorumState.from_json(data, str(path))


def write_state(path: Path, state: QuorumState) -> None:
    """Atomically and durably replace the state file (drorch.durable: tmp written in
    full, fsync, rename, fsync folder)."""
    data = (json.dumps(state.to_json(), indent=1, sort_keys=True) + "\n").encode("utf-8")
    write_atomic(path, data)


def create_state(
    path: Path,
    lease_ms: int,
    switch_delay_ms: int,
    clusters: dict[str, DurableLease] | None = None,
) -> QuorumState:
    """`--init`: write a fresh state; FileExistsError if one is already there."""
    if path.exists() or path.is_symlink():
        raise FileExistsError(
            f"{path}: a state file already exists; refusing --init (it would reset epochs)"
        )
    state = QuorumState(lease_ms, switch_delay_ms, dict(clusters or {}))
    write_state(path, state)
    return state
