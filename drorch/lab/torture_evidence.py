"""What a torture run is judged on, read from the lab's files (torture_judge.py judges):
the counter on each replica's disk, the agents' role logs, and the moments a site stopped
writing (a kill from the event log, a soft watchdog firing from its log)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from drorch.lab.cluster_full import NODES, LabFiles
from drorch.lab.events import LabEvent
from drorch.lab.torture_judge import Stop


def disk_counters(files: LabFiles, vm: str) -> dict[str, int | None]:
    """The counter each replica's disk holds (block 0: `DISKCOUNTER n`): a loss is
    seen even when the guest never boots again."""
    out: dict[str, int | None] = {}
    for site, node in NODES.items():
        try:
            with open(files.disk(vm, node), "rb") as f:
                head = f.read(64).replace(b"\0", b"")
        except OSError:
            out[site] = None
            continue
        m = re.match(rb"DISKCOUNTER (\d+)", head)
        out[site] = int(m.group(1)) if m else None
    return out


def _json_lines(text: str) -> Iterable[dict[str, Any]]:
    for line in text.splitlines():
        try:
            yield json.loads(line)
        except ValueError:
            continue  # a torn last line


def role_records(files: LabFiles) -> list[dict[str, Any]]:
    """Every agent's role log (`roles-*.jsonl`), in file order."""
    return [
        rec
        for path in sorted(files.drorch_state.glob("roles-*.jsonl"))
        for rec in _json_lines(path.read_text(encoding="utf-8"))
    ]


def site_stops(
    files: LabFiles, events: Iterable[LabEvent], sites: Sequence[str], start: float, end: float
) -> list[Stop]:
    """Kills of a site (event log) and soft watchdogs firing (their logs)."""
    stops = []
    full = {"A": sites[0], "B": sites[1]}
    for e in events:
        if e.kind == "kill-site" and start <= e.time <= end and e.target in full:
            stops.append(Stop(e.time, full[e.target], "kill-site"))
    for site, node in NODES.items():
        for path in files.drorch_state.glob(f"softdog-*-{node}.log"):
            for rec in _json_lines(path.read_text(encoding="utf-8")):
                at = float(rec.get("at", 0))
                if rec.get("event") == "fired" and start <= at <= end:
                    stops.append(Stop(at, site, "softdog fired"))
    return stops
