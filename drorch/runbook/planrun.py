"""Carry out a `plan.execute` step: compute the plan (or take it from the journal when
resuming), show it, ask its gate, then run each plan step as a unit of its own.

The plan is journaled (`expand` event) before its first step runs, so a resumed run
continues that plan and does not re-plan from a half-moved cluster. Blockers stop it
(`--force` relaxes only forceable ones); steps that may lose data need
`--accept-data-loss`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drorch.decide.actions import Action
from drorch.runbook.dryworld import (
    OBSERVED,
    after_plan,
    dry_modes,
    planning_snapshot,
    with_modes,
)
from drorch.runbook.expand import PlannedStep, blockers, compute_plan, expand
from drorch.runbook.names import StepOutcome
from drorch.runbook.replay import Replay, Unit
from drorch.runbook.steps.base import StepFailed, StepResult, bind_args
from drorch.runbook.when import WhenError

if TYPE_CHECKING:
    from drorch.runbook.engine import Engine
    from drorch.runbook.model import RunbookStep


def run_plan(engine: Engine, step: RunbookStep, replay: Replay) -> str:
    out = engine.options.output
    parent = engine._unit(step)
    engine.index += 1
    label = f"[{engine.index}/{engine.total}] {step.id}"
    st = replay.state(step.id)
    if st.skipped:
        engine.outcomes[step.id] = StepOutcome("skipped")
        out.line(f"{label}: skipped (journal)")
        return "skipped"
    kind, to = str(parent.args.get("kind")), str(parent.args.get("to"))
    out.line(f"{label}: plan {kind} to {to}")
    if step.when is not None and step.id not in replay.expansions:
        try:
            go = step.when.evaluate(engine._names().resolve)
        except WhenError as exc:
            return engine._fail(parent, StepFailed("bad-when", exc.message))
        if not go:
            engine._event(step.id, "skip", parent, message=f"when false: {step.when.text}")
            engine.outcomes[step.id] = StepOutcome("skipped")
            out.line(f"  skipped (when false: {step.when.text})")
            return "skipped"
    try:
        children, source = _children(engine, parent, replay, kind, to)
    except StepFailed as failure:
        return engine._fail(parent, failure)
    engine.total += len(children) - 1
    engine.index -= 1  # the plan's own steps are what is counted
    if not st.started and parent.confirm and not engine._gate(parent):
        return "declined"
    if not st.started and not engine.options.dry_run:
        engine._event(step.id, "start", parent, attempt=1)
    from drorch.runbook.engine import _Done

    engine.completed.append(_Done(parent, StepResult(False, ""), is_plan=True))
    failed: StepFailed | None = None
    changed = False
    would_fail = 0
    for child in children:
        unit = _unit(parent, child)
        status = _unchecked(engine, unit, source) if source else engine._run_step(unit, replay)
        changed = changed or engine.outcomes.get(child.key, StepOutcome("")).changed
        if status == "would-fail":
            would_fail += 1
        if status == "declined":
            return "declined"
        if status == "failed":
            failed = engine.failure
            if step.on_failure.value != "continue":
                break
    if engine.options.dry_run:
        engine.outcomes[step.id] = StepOutcome("would-fail" if would_fail else "would-run")
        return "would-fail" if would_fail else "would-run"
    if failed is not None:
        engine.failure = failed
        engine._event(step.id, "end", parent, status="failed", message=failed.message,
                      data={"code": failed.code})  # fmt: skip
        engine.outcomes[step.id] = StepOutcome("failed", changed, failed.message)
        return "failed"
    message = f"{len(children)} plan steps done"
    engine._event(step.id, "end", parent, status="ok", changed=changed, message=message)
    engine.outcomes[step.id] = StepOutcome("ok", changed, message)
    return "ok"


def _unchecked(engine: Engine, unit: Unit, source: str) -> str:
    """A dry run's step of a plan made from a simulated world: the world it would act on
    does not exist yet, so checking it against today's cluster would only mislead
    ("web already runs at A"). It is shown, not checked; a real run checks it."""
    engine.index += 1
    step_type = engine.types.get(unit.action)
    what = step_type.describe(unit.args) if step_type is not None else unit.action
    message = (f"not checked: planned from {source}; "
               "checked against the cluster when a real run gets here")  # fmt: skip
    engine.options.output.line(f"[{engine.index}/{engine.total}] {unit.key}: {what}")
    engine._event(unit.key, "end", unit, status="would-run", changed=True, message=message)
    engine.outcomes[unit.key] = StepOutcome("would-run", True, message)
    engine.options.output.line(f"  would change: {message}")
    return "would-run"


def _unit(parent: Unit, child: PlannedStep) -> Unit:
    return Unit(
        child.key, child.action, child.args, parent.phase, None, parent.key,
        parent.on_failure, parent.retry, parent.timeout, None, child.reason, child.data_loss,
    )  # fmt: skip


def _children(
    engine: Engine, parent: Unit, replay: Replay, kind: str, to: str
) -> tuple[list[PlannedStep], str]:
    """The plan's steps, and the simulated world they were planned from ("": planned
    from the journal or from what was observed)."""
    out = engine.options.output
    saved = replay.expansions.get(parent.key)
    if saved is not None:
        raw = saved.get("children")
        children = [PlannedStep.from_dict(c) for c in raw if isinstance(c, dict)] if isinstance(
            raw, list
        ) else []  # fmt: skip
        out.line(f"  the plan journaled at the start: {len(children)} steps")
        return [_rebind(engine, c) for c in children], ""
    dry = engine.options.dry_run
    snapshot, source = planning_snapshot(engine.cluster, engine.env, engine.simulated, dry)
    simulated = source if source != OBSERVED else ""
    supposed = dry_modes(engine.facts) if dry else {}
    if supposed:  # as the dry run's replication.set_mode would leave them
        snapshot = with_modes(snapshot, supposed)
        modes = ", ".join(f"{v} {m}" for v, m in sorted(supposed.items()))
        out.line(f"  planned with {modes}: the mode an earlier step of this dry run would set")
    plan = compute_plan(snapshot, kind, to)
    if dry:
        engine.simulated = after_plan(engine.simulated, parent.key, snapshot, plan,
                                      engine.options.force)  # fmt: skip
    if simulated:
        out.line(f"  planned from {simulated}")
    for note in plan.notes:
        out.line(f"  note: {note.message}")
    blocked = blockers(plan, engine.options.force)
    if blocked:
        raise StepFailed("plan-blocked", "; ".join(blocked), data={"blockers": blocked})
    fallback = str(parent.args.get("fallback") or "fail")
    extra = {Action.MIGRATE_LIVE: {"fallback": fallback}} if fallback != "fail" else {}
    children = expand(plan, parent.key, extra)
    lossy = [c.key for c in children if c.data_loss]
    if lossy and not engine.options.accept_data_loss:
        raise StepFailed(
            "data-loss-not-acknowledged",
            f"plan steps {', '.join(lossy)} may lose acknowledged writes; "
            "run with --force --accept-data-loss if that is what you mean",
        )
    engine._event(parent.key, "expand", parent, data={
        "kind": plan.kind, "from": plan.from_site, "to": plan.to_site, "planned_from": source,
        "notes": [n.message for n in plan.notes], "children": [c.as_dict() for c in children],
    })  # fmt: skip
    out.line(f"  plan {plan.kind} {plan.from_site} -> {plan.to_site}: {len(children)} steps")
    for i, c in enumerate(children, start=1):
        flag = " [DATA LOSS]" if c.data_loss else ""
        out.line(f"    {i:2}. {c.action} {c.args.get('target', '')}{flag}: {c.reason}")
    return children, simulated


def _rebind(engine: Engine, child: PlannedStep) -> PlannedStep:
    """Journaled args are JSON (lists for tuples): type them again."""
    step_type = engine.types.get(child.action)
    if step_type is None:
        return child
    args, problems = bind_args(step_type.params, child.args)
    if problems:
        return child
    return PlannedStep(child.key, child.action, args, child.reason, child.data_loss)
