"""Trends over the drill history: per drill, the latest RTO and worst downtime beside
the median of the runs before it, and flags.

- `over-target`: the latest run missed the drill's `targets` (rto, downtime);
- `regression`: the latest run is more than `tolerance` (default 50%) worse than the
  median of the previous runs (at least `min_runs` of them, default 3);
- `failing`: the latest due drill did not succeed (failed, rolled back, skipped, missed).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from drorch.drill.history import DrillRow
from drorch.model.types import DrillTargets

TOLERANCE = 0.5
MIN_RUNS = 3


@dataclass
class Trend:
    cluster: str
    drill: str
    kind: str
    runs: int  # succeeded runs considered
    last_result: str
    last_rto_s: float | None = None
    median_rto_s: float | None = None  # of the runs before the last
    target_rto_s: float | None = None
    last_downtime_s: float | None = None
    median_downtime_s: float | None = None
    target_downtime_s: float | None = None
    flags: list[str] = field(default_factory=list)
    rtos: list[float] = field(default_factory=list)  # oldest first, for the chart

    def as_dict(self) -> dict[str, object]:
        return {
            "cluster": self.cluster, "drill": self.drill, "kind": self.kind,
            "runs": self.runs, "last_result": self.last_result,
            "last_rto_s": self.last_rto_s, "median_rto_s": self.median_rto_s,
            "target_rto_s": self.target_rto_s, "last_downtime_s": self.last_downtime_s,
            "median_downtime_s": self.median_downtime_s,
            "target_downtime_s": self.target_downtime_s, "flags": list(self.flags),
            "rtos": list(self.rtos),
        }  # fmt: skip


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _worse(last: float | None, median: float | None, n: int, tolerance: float) -> bool:
    return (
        last is not None
        and median is not None
        and n >= MIN_RUNS
        and (last > median * (1 + tolerance))
    )


def trend(
    rows: Iterable[DrillRow],
    targets: DrillTargets | None = None,
    tolerance: float = TOLERANCE,
) -> Trend | None:
    """The trend of one drill's rows (oldest first); None without rows."""
    rows = list(rows)
    if not rows:
        return None
    last = rows[-1]
    raw = next((r.data["targets"] for r in reversed(rows)
                if isinstance(r.data.get("targets"), dict)), {})  # fmt: skip
    stored: dict[str, object] = raw if isinstance(raw, dict) else {}
    t_rto = targets.rto if targets else _f(stored.get("rto"))
    t_down = targets.downtime if targets else _f(stored.get("downtime"))
    done = [r for r in rows if r.result == "succeeded"]
    out = Trend(last.cluster, last.drill, last.kind, len(done), last.result,
                target_rto_s=t_rto, target_downtime_s=t_down)  # fmt: skip
    out.rtos = [r.rto_s for r in done if r.rto_s is not None]
    if last.result != "succeeded":
        out.flags.append("failing")
    if done:
        latest, before = done[-1], done[:-1]
        out.last_rto_s, out.last_downtime_s = latest.rto_s, latest.max_downtime_s
        prior_rto = [r.rto_s for r in before if r.rto_s is not None]
        prior_down = [r.max_downtime_s for r in before if r.max_downtime_s is not None]
        out.median_rto_s, out.median_downtime_s = _median(prior_rto), _median(prior_down)
        over = (t_rto is not None and out.last_rto_s is not None and out.last_rto_s > t_rto) or (
            t_down is not None and out.last_downtime_s is not None
            and out.last_downtime_s > t_down
        )  # fmt: skip
        if over:
            out.flags.append("over-target")
        if _worse(out.last_rto_s, out.median_rto_s, len(prior_rto), tolerance) or _worse(
            out.last_downtime_s, out.median_downtime_s, len(prior_down), tolerance
        ):
            out.flags.append("regression")
    return out


def trends(
    rows: Iterable[DrillRow], targets: dict[tuple[str, str], DrillTargets] | None = None
) -> list[Trend]:
    """One trend per (cluster, drill) in `rows`, sorted by name."""
    by: dict[tuple[str, str], list[DrillRow]] = {}
    for r in rows:
        by.setdefault((r.cluster, r.drill), []).append(r)
    out = []
    for key in sorted(by):
        t = trend(by[key], (targets or {}).get(key))
        if t is not None:
            out.append(t)
    return out


def _f(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
