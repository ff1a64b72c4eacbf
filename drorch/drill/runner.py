"""One drill: preflight guards, the drill's runbook through the engine, measurements
into the history.

    outcome = run_drill(cluster, drill, env, RunOptions(confirmer=YesConfirmer()))

A guard that refuses, or an engine that refuses to start (cluster locked, an
interrupted run waiting), records a `skipped` row with the reasons. Otherwise the run
is recorded with its runbook run id, result (`succeeded`, `rolled-back` when a step
failed and the completed steps were undone, `failed` when even that did not work) and
its measurements from the journal: RTO (run start to the end of the runbook's
`at-target` step, which verifies everything at the target), RPO, each VM's worst
single outage (and the sum over the drill), the total time and the step timeline.
A dry run checks the guards and the runbook and records nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from drorch.drill.history import History, Reason
from drorch.drill.liveness import own_process
from drorch.drill.preflight import preflight
from drorch.drill.progress import ProgressRecorder
from drorch.environment import Environment
from drorch.model.types import Cluster, Drill
from drorch.runbook.engine import Engine
from drorch.runbook.journal import Journal
from drorch.runbook.load import load_runbook
from drorch.runbook.model import Runbook
from drorch.runbook.report import recovery, timeline
from drorch.runbook.setup import ParamError, RunOptions, RunRefused

# The step of a drill runbook that proves everything runs at the target: the drill's RTO
# is measured from the run's start to its end (the way back is not part of the RTO).
AT_TARGET = "at-target"
OPERATOR_ERRORS = ("needs-confirmation", "bad-param")  # not recorded as skipped drills
RESULT_OF_STATUS = {
    "succeeded": "succeeded",
    "rolled-back": "rolled-back",
    "failed": "failed",
    "rollback-failed": "failed",
    "declined": "failed",
}


@dataclass
class DrillOutcome:
    result: str  # succeeded failed rolled-back skipped dry-run dry-run-failed
    drill_id: int | None = None
    run_id: str = ""
    message: str = ""
    reasons: list[Reason] = field(default_factory=list)
    measurements: dict[str, object] = field(default_factory=dict)


def drill_runbook_dir(explicit: Path | None = None) -> Path:
    """`$DRORCH_RUNBOOKS/drills`, else the shipped runbooks' `drills/`
    (drorch.shipped_runbooks: in the installed package, or the source checkout)."""
    if explicit is not None:
        return explicit
    if os.environ.get("DRORCH_RUNBOOKS"):
        return Path(os.environ["DRORCH_RUNBOOKS"]) / "drills"
    from drorch.shipped_runbooks import shipped_runbooks_dir

    return (shipped_runbooks_dir() or Path("runbooks")) / "drills"


def drill_runbook(drill: Drill, directory: Path | None = None) -> Runbook:
    """The runbook of the drill's kind (ConfigError when it does not load)."""
    return load_runbook(drill_runbook_dir(directory) / f"{drill.kind.value}.yaml")


def drill_params(runbook: Runbook, cluster: Cluster, drill: Drill) -> dict[str, object]:
    """What a drill runbook may declare: `to` (the target), `home` (where the cluster
    runs and returns to), `drill` (its name)."""
    offered: dict[str, object] = {
        "to": drill.target,
        "home": cluster.other_site(drill.target).name,
        "drill": drill.name,
    }
    declared = {p.name for p in runbook.params}
    return {k: v for k, v in offered.items() if k in declared}


def measure(
    state_dir: Path, run_id: str, progress: dict[str, list[list[float]]] | None = None
) -> dict[str, object]:
    """RTO, RPO, downtime per VM, total time and the step timeline of a finished run."""
    journal = Journal(state_dir)
    try:
        record = journal.run(run_id)
        events = journal.events(run_id)
    finally:
        journal.close()
    if record is None:
        return {}
    steps = timeline(events)
    rec = recovery(record, steps)
    at_target = next((s for s in steps if s.step == AT_TARGET and s.status == "ok"), None)
    if at_target is not None and at_target.ended_at is not None:
        rec["rto_s"] = round(at_target.ended_at - record.started_at, 3)
        rec["rto_basis"] = f"run start -> {AT_TARGET} (everything verified at the target)"
    worst: dict[str, float] = {}
    for s in steps:
        vm, down = s.data.get("vm"), _num(s.data.get("downtime_s"))
        if isinstance(vm, str) and down is not None:
            worst[vm] = max(worst.get(vm, 0.0), round(down, 3))
    total = None if record.ended_at is None else round(record.ended_at - record.started_at, 3)
    return {
        **rec,
        "downtime_total_s": rec["downtime_s"],
        "downtime_s": worst,
        "total_s": total,
        "steps": [
            {
                "step": s.step, "action": s.action, "phase": s.phase, "status": s.status,
                "start_s": None if s.started_at is None
                else round(s.started_at - record.started_at, 3),
                "duration_s": s.duration_s, "message": s.message,
                "progress": (progress or {}).get(s.step),
            }
            for s in steps
        ],
    }  # fmt: skip


def run_drill(
    cluster: Cluster,
    drill: Drill,
    env: Environment,
    options: RunOptions,
    *,
    runbook: Runbook | None = None,
    scheduled_for: float | None = None,
    problems: list[str] | None = None,
) -> DrillOutcome:
    rb = runbook or drill_runbook(drill)
    clock = env.clock
    reasons = preflight(cluster, env, problems)
    with History(env.state_dir) as history:
        kind, name, target = drill.kind.value, drill.name, drill.target
        if reasons and not options.dry_run:
            drill_id = history.skip(cluster.name, name, kind, target, clock.now(), "skipped",
                                    reasons, scheduled_for)  # fmt: skip
            return DrillOutcome("skipped", drill_id, reasons=reasons,
                                message=f"{len(reasons)} preflight guard(s) refused")  # fmt: skip
        if reasons:
            return DrillOutcome("dry-run-failed", reasons=reasons,
                                message="the preflight guards would refuse this drill")  # fmt: skip
        params = drill_params(rb, cluster, drill)
        run_row: int | None = None if options.dry_run else history.begin(
            cluster.name, name, kind, target, clock.now(), scheduled_for,
            data={"process": own_process()})  # fmt: skip

        def named(rid: str, row: int | None = run_row) -> None:
            if row is not None:
                history.set_run_id(row, rid)

        recorder = ProgressRecorder(options.output, clock, named)
        engine = Engine(rb, cluster, env, replace(options, output=recorder))
        try:
            summary = engine.start(params)
        except (RunRefused, ParamError) as exc:
            why = (Reason(exc.code, exc.message) if isinstance(exc, RunRefused)
                   else Reason("bad-param", str(exc)))  # fmt: skip
            if run_row is not None and why.code in OPERATOR_ERRORS:
                history.forget(run_row)  # nobody could answer its gates: not a due drill
                run_row = None
            elif run_row is not None:
                history.finish(run_row, clock.now(), "skipped", reasons=[why])
            return DrillOutcome("skipped", run_row, reasons=[why], message=why.message)
        if options.dry_run:
            return DrillOutcome(summary.status, None, summary.run_id, summary.message)
        assert run_row is not None
        history.set_run_id(run_row, summary.run_id)
        m = measure(env.state_dir, summary.run_id, recorder.samples)
        result = RESULT_OF_STATUS.get(summary.status, "failed")
        failed = [] if result == "succeeded" else [
            Reason(summary.failed_code or summary.status, summary.message)]  # fmt: skip
        downs = m.get("downtime_s")
        history.finish(
            run_row, clock.now(), result, run_id=summary.run_id, reasons=failed,
            rto_s=_num(m.get("rto_s")), rpo_bytes=_int(m.get("rpo_bytes")),
            total_s=_num(m.get("total_s")),
            downtime_s=dict(downs) if isinstance(downs, dict) else {},
            data={"steps": m.get("steps", []), "rto_basis": m.get("rto_basis"),
                  "downtime_total_s": m.get("downtime_total_s"),
                  "rpo_basis": m.get("rpo_basis"), "params": params,
                  "targets": {"rto": drill.targets.rto, "downtime": drill.targets.downtime}},
        )  # fmt: skip
        return DrillOutcome(result, run_row, summary.run_id, summary.message, failed, m)


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _int(v: object) -> int | None:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
