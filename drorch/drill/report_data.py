"""A drill report as data (for `--format json`), and as Markdown: the summary, pass or
fail against the targets, the step timeline and the trend of the last drills."""

from __future__ import annotations

from drorch.drill.history import DrillRow
from drorch.drill.schedule import iso
from drorch.drill.trend import Trend


def verdicts(row: DrillRow) -> list[dict[str, object]]:
    """Each target beside the measured value: pass, fail, or unknown (not measured)."""
    raw = row.data.get("targets")
    targets: dict[str, object] = raw if isinstance(raw, dict) else {}
    out: list[dict[str, object]] = []
    for name, target, value, unit in (
        ("RTO", targets.get("rto"), row.rto_s, "s"),
        ("worst downtime", targets.get("downtime"), row.max_downtime_s, "s"),
        ("RPO", 0 if row.kind != "test-recovery" else None, row.rpo_bytes, "bytes"),
    ):
        if not isinstance(target, int | float):
            continue
        verdict = "unknown" if value is None else ("pass" if value <= target else "fail")
        out.append({"measure": name, "target": target, "measured": value, "unit": unit,
                    "verdict": verdict})  # fmt: skip
    return out


def report_data(row: DrillRow, history: list[DrillRow], trend: Trend | None) -> dict[str, object]:
    return {
        "drill": row.as_dict(),
        "started": iso(row.started_at),
        "ended": None if row.ended_at is None else iso(row.ended_at),
        "verdicts": verdicts(row),
        "trend": None if trend is None else trend.as_dict(),
        "previous": [_brief(r) for r in history],
    }


def _brief(r: DrillRow) -> dict[str, object]:
    return {"id": r.id, "started": iso(r.started_at), "result": r.result, "rto_s": r.rto_s,
            "max_downtime_s": r.max_downtime_s}  # fmt: skip


def _steps(row: DrillRow) -> list[dict[str, object]]:
    raw = row.data.get("steps")
    return [s for s in raw if isinstance(s, dict)] if isinstance(raw, list) else []


def report_markdown(row: DrillRow, history: list[DrillRow], trend: Trend | None) -> str:
    lines = [
        f"# Drill {row.drill} on {row.cluster}: {row.result}",
        "",
        f"- kind: {row.kind}, target site: {row.target}",
        f"- started: {iso(row.started_at)}" + (f", ended: {iso(row.ended_at)}" if row.ended_at
                                               else ""),
        f"- runbook run: {row.run_id or '-'}",
        f"- RTO: {_v(row.rto_s, 's')}, RPO: {_v(row.rpo_bytes, 'bytes')}, "
        f"total: {_v(row.total_s, 's')}",
    ]  # fmt: skip
    for reason in row.reasons:
        lines.append(f"- {reason.code}: {reason.message}")
    if row.downtime_s:
        lines += ["", "| VM | downtime |", "|---|---|"]
        lines += [f"| {vm} | {d} s |" for vm, d in row.downtime_s.items()]
    checks = verdicts(row)
    if checks:
        lines += ["", "| measure | target | measured | verdict |", "|---|---|---|---|"]
        for c in checks:
            measured = _v(c["measured"], str(c["unit"]))
            lines.append(f"| {c['measure']} | {c['target']} {c['unit']} | {measured} | "
                         f"{c['verdict']} |")  # fmt: skip
    steps = _steps(row)
    if steps:
        lines += ["", "| step | action | phase | status | start | duration |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {s.get('step')} | {s.get('action')} | {s.get('phase')} | "
                  f"{s.get('status')} | {_v(s.get('start_s'), 's')} | "
                  f"{_v(s.get('duration_s'), 's')} |" for s in steps]  # fmt: skip
    if trend is not None:
        lines += ["", f"Trend: median RTO of earlier runs {_v(trend.median_rto_s, 's')}, "
                  f"flags: {', '.join(trend.flags) or 'none'}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _v(value: object, unit: str) -> str:
    return "-" if value is None else f"{value} {unit}"
