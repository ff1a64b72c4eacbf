"""The lab's event log: every fault and repair, timestamped, one JSON object a line.

`drorch lab fault ...` appends to it; `drorch lab events` prints it; the demo and the
torture runs read it to line faults up with what the agents and replicas did.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drorch.clock import Clock


@dataclass(frozen=True)
class LabEvent:
    time: float  # wall clock, seconds since the epoch
    kind: str  # partition, heal, kill-site, kill-witness, freeze-agent, wan, ...
    target: str  # A-B, A, witness, ...
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def iso_time(self) -> str:
        return datetime.fromtimestamp(self.time, UTC).isoformat(timespec="milliseconds")

    def row(self) -> dict[str, Any]:
        return {"time": self.iso_time, "kind": self.kind, "target": self.target,
                "detail": self.detail}  # fmt: skip


class EventLog:
    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock

    def record(self, kind: str, target: str, detail: str = "", **data: Any) -> LabEvent:
        """Append one event, flushed to disk before this returns (a fault that kills
        this machine's view of a site must still be in the log)."""
        event = LabEvent(self.clock.now(), kind, target, detail, data)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(event), sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        return event

    def read(self) -> list[LabEvent]:
        """Every event in order; a torn last line (a crash mid-append) is skipped."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                raw = json.loads(line)
                out.append(
                    LabEvent(
                        float(raw["time"]),
                        str(raw["kind"]),
                        str(raw["target"]),
                        str(raw.get("detail", "")),
                        dict(raw.get("data") or {}),
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue
        return out
