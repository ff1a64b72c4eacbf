"""Synthetic drill history rows for trend, report and metrics tests."""

from __future__ import annotations

from drorch.drill.history import History, Reason

STEPS = [
    {"step": "in-sync", "action": "check.replication_in_sync", "phase": "main",
     "status": "ok", "start_s": 0.0, "duration_s": 0.5, "message": "in sync"},
    {"step": "over", "action": "plan.execute", "phase": "main", "status": "ok",
     "start_s": 0.5, "duration_s": 20.0, "message": "12 plan steps done",
     "progress": [[0, 0.0], [5, 0.4], [10, 0.8], [12, 1.0]]},
    {"step": "at-target", "action": "check.monitors", "phase": "main", "status": "ok",
     "start_s": 20.5, "duration_s": 1.5, "message": "<b>every</b> monitor ok & \"quoted\""},
    {"step": "back", "action": "plan.execute", "phase": "main", "status": "ok",
     "start_s": 22.0, "duration_s": 18.0, "message": "12 plan steps done"},
]  # fmt: skip


def add_run(
    h: History, at: float, rto: float, downtime: float, result: str = "succeeded",
    cluster: str = "hq-dr", drill: str = "weekly-live", targets: dict[str, float] | None = None,
    reasons: list[Reason] | None = None,
) -> int:  # fmt: skip
    i = h.begin(cluster, drill, "live", "B", at, at)
    h.finish(
        i, at + 40, result, run_id=f"run-{int(at)}", rto_s=rto, rpo_bytes=0, total_s=40.0,
        downtime_s={"web": downtime, "db": downtime / 2}, reasons=reasons,
        data={"steps": STEPS, "targets": targets or {"rto": 300.0, "downtime": 0.5}},
    )  # fmt: skip
    return i
