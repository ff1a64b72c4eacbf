"""The one output helper: every read command renders through `render()`.

`--format table|json|yaml`. Tables are built from a list of row dicts (or a single dict
rendered as key/value rows); JSON and YAML print the data as-is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click
import yaml

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("table", "json", "yaml")


def format_option(default: str = "table") -> Callable[[F], F]:
    """The `--format table|json|yaml` option every read command takes."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default=default,
        show_default=True,
        help="Output format.",
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain aligned text table."""
    if not rows:
        return "(none)"
    cols = list(columns) if columns else list(rows[0].keys())
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def to_text(data: Any, fmt: str, columns: Sequence[str] | None = None) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False, default=str)
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip()
    if isinstance(data, Mapping):
        if columns is None and all(not isinstance(v, list) for v in data.values()):
            return table([{"key": k, "value": v} for k, v in data.items()], ["key", "value"])
        parts = []
        for key, value in data.items():
            if isinstance(value, list) and value and isinstance(value[0], Mapping):
                parts.append(f"{key}:\n{table(value)}")
            else:
                parts.append(f"{key}: {_cell(value)}")
        return "\n\n".join(parts)
    if isinstance(data, list):
        return table(data, columns)
    return str(data)


def render(data: Any, fmt: str, columns: Sequence[str] | None = None) -> None:
    """Print `data` in the chosen format."""
    click.echo(to_text(data, fmt, columns))
