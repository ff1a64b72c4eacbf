"""The HTML drill report: one self-contained file (inline CSS and SVG, no script, no
external fonts, images or style sheets), every value from the history escaped.

Sections: summary; pass or fail against the targets; the step timeline as an SVG Gantt
chart; the migration progress curves (when the migration steps recorded samples); the
trend of the last drills (RTO per run, with the target line).
"""

from __future__ import annotations

from html import escape

from drorch.drill.history import DrillRow
from drorch.drill.report_data import verdicts
from drorch.drill.schedule import iso
from drorch.drill.trend import Trend

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:24px 0 8px}
table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left}
.pass,.succeeded{color:#1a7f37;font-weight:600}.fail,.failed,.rolled-back{color:#cf222e;
font-weight:600}.unknown,.skipped,.missed{color:#9a6700;font-weight:600}
svg text{font:12px system-ui,sans-serif}.note{color:#57606a}
"""
STATUS_COLOUR = {"ok": "#2da44e", "recovered": "#2da44e", "failed": "#cf222e",
                 "skipped": "#8c959f", "started": "#bf8700"}  # fmt: skip


def _e(value: object) -> str:
    return escape("-" if value is None else str(value), quote=True)


def _steps(row: DrillRow) -> list[dict[str, object]]:
    raw = row.data.get("steps")
    return [s for s in raw if isinstance(s, dict)] if isinstance(raw, list) else []


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def gantt(row: DrillRow, width: int = 900) -> str:
    """Each step a bar from its start to its end, on one time axis (seconds from the run
    start); rollback steps are hatched orange."""
    steps = [s for s in _steps(row) if _num(s.get("start_s")) is not None]
    if not steps:
        return '<p class="note">No step timeline was recorded.</p>'
    label_w, bar_h, gap = 320, 16, 6
    end = max((_num(s.get("start_s")) or 0) + (_num(s.get("duration_s")) or 0) for s in steps)
    scale = (width - label_w - 20) / max(end, 0.001)
    height = len(steps) * (bar_h + gap) + 30
    out = [f'<svg id="gantt" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" role="img" aria-label="step timeline">']  # fmt: skip
    for i, s in enumerate(steps):
        y = i * (bar_h + gap) + 4
        x = label_w + (_num(s.get("start_s")) or 0) * scale
        w = max((_num(s.get("duration_s")) or 0) * scale, 2)
        colour = "#fb8f44" if s.get("phase") == "rollback" else STATUS_COLOUR.get(
            str(s.get("status")), "#57606a")  # fmt: skip
        title = (f"{s.get('step')} ({s.get('action')}): {s.get('status')}, "
                 f"{s.get('duration_s')} s — {s.get('message')}")  # fmt: skip
        label = str(s.get("step"))
        label = label if len(label) <= 46 else label[:45] + "…"
        out.append(f'<text x="0" y="{y + 12}">{_e(label)}</text>')
        out.append(f'<rect class="bar" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                   f'fill="{colour}"><title>{_e(title)}</title></rect>')  # fmt: skip
    axis_y = height - 10
    out.append(f'<line x1="{label_w}" y1="{axis_y - 8}" x2="{width - 20}" y2="{axis_y - 8}" '
               'stroke="#57606a"/>')  # fmt: skip
    for k in range(6):
        t = end * k / 5
        out.append(f'<text x="{label_w + t * scale:.1f}" y="{axis_y + 2}">{t:.1f}s</text>')
    out.append("</svg>")
    return "\n".join(out)


def _polyline(points: list[tuple[float, float]], colour: str) -> str:
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>'


def progress_curves(row: DrillRow, width: int = 900, height: int = 220) -> str:
    """Per migration step, its recorded `progress` samples ([seconds, fraction done]
    pairs, or {t, done, total} mappings) as one curve each."""
    curves: list[tuple[str, list[tuple[float, float]]]] = []
    for s in _steps(row):
        raw = s.get("progress")
        if not isinstance(raw, list) or len(raw) < 2:
            continue
        pts: list[tuple[float, float]] = []
        for p in raw:
            if isinstance(p, list | tuple) and len(p) == 2:
                t, f = _num(p[0]), _num(p[1])
            elif isinstance(p, dict):
                t, done, total = _num(p.get("t")), _num(p.get("done")), _num(p.get("total"))
                f = None if done is None or not total else done / total
            else:
                t = f = None
            if t is not None and f is not None:
                pts.append((t, f))
        if len(pts) >= 2:
            curves.append((str(s.get("step")), pts))
    if not curves:
        return '<p class="note">No migration progress samples were recorded for this drill.</p>'
    t_max = max(p[0] for _, pts in curves for p in pts) or 1.0
    colours = ["#0969da", "#8250df", "#bf3989", "#1a7f37", "#9a6700"]
    out = [f'<svg id="progress" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height + 20}" role="img" aria-label="migration progress">']  # fmt: skip
    for i, (name, pts) in enumerate(curves):
        scaled = [(40 + t / t_max * (width - 60), height - f * (height - 20)) for t, f in pts]
        out.append(_polyline(scaled, colours[i % len(colours)]))
        out.append(f'<text x="{width - 200}" y="{16 + 14 * i}" '
                   f'fill="{colours[i % len(colours)]}">{_e(name)}</text>')  # fmt: skip
    out.append(f'<text x="40" y="{height + 16}">0 s</text><text x="{width - 60}" '
               f'y="{height + 16}">{t_max:.1f} s</text>')  # fmt: skip
    out.append("</svg>")
    return "\n".join(out)


def trend_chart(trend: Trend | None, width: int = 900, height: int = 200) -> str:
    """RTO per successful drill, oldest first, with the target as a dashed line (or a
    note at the top when the target is far above every run)."""
    if trend is None or not trend.rtos:
        return '<p class="note">No earlier successful drill has an RTO yet.</p>'
    values = trend.rtos
    target = trend.target_rto_s
    top = max(values) * 1.3 or 1.0
    if target is not None and target <= top * 1.5:
        top = max(top, target * 1.15)
    step = (width - 80) / max(len(values) - 1, 1)

    def y(v: float) -> float:
        return height - 20 - v / top * (height - 40)

    pts = [(50 + i * step, y(v)) for i, v in enumerate(values)]
    out = [f'<svg id="trend" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" role="img" aria-label="RTO trend">']  # fmt: skip
    out.append(f'<line x1="40" y1="{height - 20}" x2="{width - 20}" y2="{height - 20}" '
               'stroke="#57606a"/>')  # fmt: skip
    out.append(_polyline(pts, "#0969da"))
    for (x, yy), v in zip(pts, values, strict=True):
        out.append(f'<circle cx="{x:.1f}" cy="{yy:.1f}" r="4" fill="#0969da">'
                   f"<title>RTO {v} s</title></circle>")  # fmt: skip
        out.append(f'<text x="{x - 12:.1f}" y="{yy - 8:.1f}">{v:g}</text>')
    if target is not None and target <= top:
        ty = y(target)
        out.append(f'<line x1="40" y1="{ty:.1f}" x2="{width - 20}" y2="{ty:.1f}" '
                   'stroke="#cf222e" stroke-dasharray="6 4"/>')  # fmt: skip
        out.append(f'<text x="{width - 150}" y="{ty - 4:.1f}" fill="#cf222e">target '
                   f"{target:g} s</text>")  # fmt: skip
    elif target is not None:
        out.append(f'<text x="{width - 260}" y="14" fill="#1a7f37">target {target:g} s '
                   "(far above every run)</text>")  # fmt: skip
    out.append(f'<text x="0" y="14">RTO s (max {max(values):g})</text></svg>')
    return "\n".join(out)


def report_html(row: DrillRow, trend: Trend | None) -> str:
    rows = "".join(
        f"<tr><td>{_e(c['measure'])}</td><td>{_e(c['target'])} {_e(c['unit'])}</td>"
        f"<td>{_e(c['measured'])} {_e(c['unit'])}</td>"
        f'<td class="{_e(c["verdict"])}">{_e(c["verdict"])}</td></tr>'
        for c in verdicts(row)
    )
    downs = "".join(f"<tr><td>{_e(vm)}</td><td>{_e(d)} s</td></tr>"
                    for vm, d in row.downtime_s.items())  # fmt: skip
    reasons = "".join(f"<li><code>{_e(r.code)}</code> {_e(r.message)}</li>" for r in row.reasons)
    flags = ", ".join(trend.flags) if trend and trend.flags else "none"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>drorch drill {_e(row.drill)} on {_e(row.cluster)}: {_e(row.result)}</title>
<style>{CSS}</style></head><body>
<h1>Drill <code>{_e(row.drill)}</code> on <code>{_e(row.cluster)}</code>:
<span class="{_e(row.result)}">{_e(row.result)}</span></h1>
<section id="summary"><table>
<tr><th>kind</th><td>{_e(row.kind)}</td><th>target site</th><td>{_e(row.target)}</td></tr>
<tr><th>started</th><td>{_e(iso(row.started_at))}</td><th>ended</th>
<td>{_e(iso(row.ended_at) if row.ended_at else None)}</td></tr>
<tr><th>RTO</th><td>{_e(row.rto_s)} s</td><th>RPO</th><td>{_e(row.rpo_bytes)} bytes</td></tr>
<tr><th>total</th><td>{_e(row.total_s)} s</td><th>runbook run</th><td>{_e(row.run_id)}</td></tr>
</table>{f"<ul>{reasons}</ul>" if reasons else ""}</section>
<h2>Targets</h2>
{
        f"<table><tr><th>measure</th><th>target</th><th>measured</th><th>verdict</th></tr>{rows}</table>"
        if rows
        else '<p class="note">No targets are configured for this drill.</p>'
    }
<h2>Downtime per VM</h2>
{
        f"<table><tr><th>VM</th><th>worst outage</th></tr>{downs}</table>"
        if downs
        else '<p class="note">No VM downtime was measured.</p>'
    }
<h2>Step timeline</h2>
{gantt(row)}
<h2>Migration progress</h2>
{progress_curves(row)}
<h2>Trend of the last drills</h2>
<p>median RTO of the earlier runs: {_e(trend.median_rto_s if trend else None)} s;
flags: <strong>{_e(flags)}</strong></p>
{trend_chart(trend)}
<p class="note">drorch drill report {_e(row.id)} ({_e(row.run_id)})</p>
</body></html>
"""
