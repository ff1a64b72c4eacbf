"""Run reports from the journal: a timeline of steps and, for migration and failover
runs, the measured RTO, the RPO and each VM's downtime.

- RTO: from the start of the run until the last VM or service was verified at the
  target (the end of the last step reporting `verified: true`, or of the last successful
  vm.verify_alive / monitor.verify / check.monitors). No verified step: no RTO (the
  report says why).
- RPO: the largest `rpo_bytes` a step reported at switch time (0 when every volume was
  in sync mode and in sync; what the witness's outdate record implies otherwise, as the
  promote step reports it). Nothing reported: unknown, never a made-up 0.
- Downtime: per VM, the `downtime_s` its steps reported (live migration's pause, or
  stop-to-verified for a cold move).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drorch.runbook.journal import RUNNING, Event, RunRecord


@dataclass
class StepLine:
    step: str
    action: str
    phase: str
    status: str = "started"
    started_at: float | None = None
    ended_at: float | None = None
    attempts: int = 0
    changed: bool = False
    confirmed_by: str = ""
    message: str = ""
    data: dict[str, object] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return round(self.ended_at - self.started_at, 3)


def timeline(events: list[Event]) -> list[StepLine]:
    lines: dict[str, StepLine] = {}
    for ev in events:
        if not ev.step or ev.kind in ("expand",):
            continue
        line = lines.get(ev.step)
        if line is None:
            line = lines[ev.step] = StepLine(ev.step, ev.action, ev.phase)
        if ev.kind == "confirm":
            line.confirmed_by = f"{ev.confirmer} ({ev.status})"
            line.started_at = line.started_at or ev.at
        elif ev.kind == "start":
            line.started_at = line.started_at if line.started_at is not None else ev.at
            line.attempts = max(line.attempts, ev.attempt)
        elif ev.kind in ("end", "skip"):
            line.status = "skipped" if ev.kind == "skip" else ev.status
            line.ended_at = ev.at
            if line.started_at is None:
                line.started_at = ev.at
            line.changed, line.message, line.data = ev.changed, ev.message, dict(ev.data)
    return list(lines.values())


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def effective_status(record: RunRecord, lock_holder: str | None) -> str:
    """`running` only while a process holds the cluster lock for it; else interrupted."""
    if record.status == RUNNING and not record.dry_run and lock_holder != record.run_id:
        return "interrupted"
    return record.status


def run_report(record: RunRecord, events: list[Event], status: str) -> dict[str, object]:
    steps = timeline(events)
    kind = next((str(e.data.get("kind")) for e in events if e.kind == "expand"), "")
    out: dict[str, object] = {
        "run_id": record.run_id,
        "runbook": record.runbook,
        "cluster": record.cluster,
        "status": status,
        "message": record.message,
        "dry_run": record.dry_run,
        "user": record.user,
        "host": record.host,
        "params": record.params,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "duration_s": None
        if record.ended_at is None
        else round(record.ended_at - record.started_at, 3),
        "kind": kind or None,
    }
    out["recovery"] = recovery(record, steps) if kind and not record.dry_run else None
    out["steps"] = [
        {
            "step": s.step, "action": s.action, "phase": s.phase, "status": s.status,
            "start": round(s.started_at - record.started_at, 3) if s.started_at else None,
            "duration_s": s.duration_s, "attempts": s.attempts, "changed": s.changed,
            "confirmed_by": s.confirmed_by or None, "message": s.message,
        }
        for s in steps
    ]  # fmt: skip
    return out


VERIFYING_ACTIONS = frozenset({"monitor.verify", "check.monitors", "vm.verify_alive"})


def _verified(s: StepLine) -> bool:
    if s.ended_at is None or s.status != "ok":
        return False
    return s.data.get("verified") is True or s.action in VERIFYING_ACTIONS


def _cold_downtime(steps: list[StepLine]) -> dict[str, float]:
    """A cold move's downtime per VM: from the start of its vm.shutdown to the end of the
    vm.start that brought it back (the VM named by the step's `vm` data)."""
    down: dict[str, float] = {}
    stopped: dict[str, float] = {}
    for s in steps:
        vm = s.data.get("vm")
        if not isinstance(vm, str) or s.status != "ok":
            continue
        if s.action == "vm.shutdown" and s.started_at is not None:
            stopped[vm] = s.started_at
        elif s.action == "vm.start" and s.ended_at is not None and vm in stopped:
            down[vm] = round(s.ended_at - stopped.pop(vm), 3)
    return down


def recovery(record: RunRecord, steps: list[StepLine]) -> dict[str, object]:
    verified = [s for s in steps if _verified(s)]
    rto: float | None = None
    rto_basis = "no step verified a VM or service at the target"
    if verified:
        last = max(verified, key=lambda s: s.ended_at or 0.0)
        assert last.ended_at is not None
        rto = round(last.ended_at - record.started_at, 3)
        rto_basis = f"run start -> {last.step} verified"
    rpos = [v for s in steps if (v := _number(s.data.get("rpo_bytes"))) is not None]
    rpo = max(rpos) if rpos else None
    basis = next((str(s.data["rpo_basis"]) for s in steps if "rpo_basis" in s.data), "")
    downtime: dict[str, float] = {}
    for s in steps:
        vm, down = s.data.get("vm"), _number(s.data.get("downtime_s"))
        if isinstance(vm, str) and down is not None:
            downtime[vm] = round(downtime.get(vm, 0.0) + down, 3)
    for vm, down in _cold_downtime(steps).items():
        downtime.setdefault(vm, down)
    simulated = next((s.data["simulated"] for s in steps if s.data.get("simulated")), None)
    return {
        **({"simulated": simulated} if simulated else {}),
        "rto_s": rto,
        "rto_basis": rto_basis,
        "rpo_bytes": None if rpo is None else int(rpo),
        "rpo_basis": basis or ("no step reported it: unknown" if rpo is None else ""),
        "downtime_s": downtime,
    }


def history_rows(records: list[tuple[RunRecord, str]]) -> list[dict[str, object]]:
    return [
        {
            "run_id": r.run_id, "runbook": r.runbook, "cluster": r.cluster, "status": status,
            "dry_run": r.dry_run, "user": r.user, "started_at": r.started_at,
            "duration_s": None if r.ended_at is None else round(r.ended_at - r.started_at, 3),
            "message": r.message,
        }
        for r, status in records
    ]  # fmt: skip
