"""Render a run report (`drorch runbook show`): table, json, yaml or Markdown."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import click

from drorch.cli.output import render, table

COLUMNS = ["start", "step", "action", "status", "duration_s", "attempts", "confirmed_by",
           "message"]  # fmt: skip


def _when(ts: object) -> str:
    if not isinstance(ts, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _secs(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.3f}s"


def _head(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("run", str(data["run_id"])),
        ("runbook", str(data["runbook"])),
        ("cluster", str(data["cluster"])),
        ("status", str(data["status"]) + (f" ({data['message']})" if data["message"] else "")),
        ("by", f"{data['user']} on {data['host']}"),
        ("started", _when(data["started_at"])),
        ("duration", _secs(data["duration_s"])),
    ]
    rec = data.get("recovery")
    if isinstance(rec, Mapping):
        rows.append(("RTO", f"{_secs(rec['rto_s'])} ({rec['rto_basis']})"))
        rpo = rec["rpo_bytes"]
        rows.append(("RPO", ("unknown" if rpo is None else f"{rpo} bytes")
                     + (f" ({rec['rpo_basis']})" if rec["rpo_basis"] else "")))  # fmt: skip
        for vm, down in sorted(rec["downtime_s"].items()):
            rows.append((f"downtime {vm}", _secs(down)))
    return rows


def render_report(data: Mapping[str, Any], fmt: str) -> None:
    if fmt in ("json", "yaml"):
        render(dict(data), fmt)
        return
    steps = [{**s, "start": _secs(s["start"]), "duration_s": _secs(s["duration_s"])}
             for s in data["steps"]]  # fmt: skip
    if fmt == "table":
        width = max(len(k) for k, _ in _head(data))
        click.echo("\n".join(f"{k.ljust(width)}  {v}" for k, v in _head(data)))
        click.echo("")
        click.echo(table(steps, COLUMNS))
        return
    lines = [f"# Run {data['run_id']}: {data['runbook']}", ""]
    lines += [f"- **{k}**: {v}" for k, v in _head(data)]
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for s in steps:
        cells = [str(s.get(c) if s.get(c) not in (None, "") else "-").replace("|", "\\|")
                 for c in COLUMNS]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    click.echo("\n".join(lines))
