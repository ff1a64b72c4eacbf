"""Coded problem reports: every config or safety problem has a stable code and a position.

Validation collects all problems at once; `--force` may downgrade only the forceable ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Position(NamedTuple):
    """Where in a file a problem was found. Lines and columns are 1-based. (A named
    tuple: the loader makes one per YAML value, so it must be cheap to create.)"""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class ReportItem:
    """One problem: `FILE:LINE:COL: CODE: message`."""

    code: str
    message: str
    position: Position | None = None
    severity: Severity = Severity.ERROR
    forceable: bool = False

    def __str__(self) -> str:
        where = f"{self.position}: " if self.position else ""
        tag = "" if self.severity is Severity.ERROR else f"{self.severity.value}: "
        return f"{where}{tag}{self.code}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "code": self.code,
            "message": self.message,
            "severity": self.severity.value,
            "forceable": self.forceable,
        }
        if self.position is not None:
            out["position"] = str(self.position)
        return out


class ConfigError(Exception):
    """Raised when a file has errors; carries every report found, sorted by position."""

    def __init__(self, reports: Iterable[ReportItem]) -> None:
        self.reports = sorted(
            reports,
            key=lambda r: (r.position or Position("", 0, 0), r.code),
        )
        super().__init__("\n".join(str(r) for r in self.reports))

    @property
    def errors(self) -> list[ReportItem]:
        return [r for r in self.reports if r.severity is Severity.ERROR]
