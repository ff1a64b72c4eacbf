"""Rollback: after a failure under `on_failure: rollback`, put the cluster back in the
state the run started from. A step's rollback is its explicit `rollback:` steps, or with
`rollback: undo` its action's undo step type (for `plan.execute`: each plan step's undo).

What is undone, newest first:
- the step that failed, first: it may have half taken effect (a live migration whose cold
  fallback shut the guest down at the source and then failed at the target). Undo step
  types restore a state rather than replay an inverse (demote: secondary here, a no-op if
  it is; promote: primary here with a fresh epoch; migrate back: the guest runs at the
  source again, started there if it runs nowhere), so undoing a step that did nothing
  changes nothing;
- then every completed step that changed something (a step that found its work already
  done, `changed: false`, did nothing to undo: undoing it would change the start state).

A rollback step that fails stops the rollback (status rollback-failed): what is left is
for a person to judge, not for more automation. Rollback steps are journaled like any
other (phase rollback), so a run killed mid-rollback resumes the rollback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drorch.runbook.replay import Replay, Unit
from drorch.runbook.steps.base import StepResult, bind_args
from drorch.runbook.steps.flow import PLAN_EXECUTE

if TYPE_CHECKING:
    from drorch.runbook.engine import Engine, _Done


def roll_back(engine: Engine, replay: Replay) -> str:
    done = list(reversed(engine.completed))
    failed = _failed(engine)
    if not replay.rollback_started:
        keys = ([failed.unit.key] if failed else []) + [d.unit.key for d in done]
        engine._event("", "rollback", data={"steps": keys})
    engine.options.output.line("rolling back to the state the run started from, newest first")
    for item in ([failed] if failed else []) + done:
        if not item.is_plan and not item.result.changed and item is not failed:
            continue  # it found its work done: nothing of it to undo
        for unit in _undo_units(engine, item):
            if engine._run_step(unit, replay) == "failed":
                return "rollback-failed"
    return "rolled-back"


def _failed(engine: Engine) -> _Done | None:
    """The failed step as something to undo (an explicit `rollback:` of a top-level step
    undoes what it completed, not a failed attempt: left to its own steps)."""
    from drorch.runbook.engine import _Done

    unit = engine.failed_unit
    if unit is None or unit.action == PLAN_EXECUTE or unit.phase != "main":
        return None
    step_type = engine.types.get(unit.action)
    if step_type is None or step_type.undo is None or not step_type.undo_restores:
        return None
    if unit.parent is None and unit.step is not None and unit.step.rollback:
        return None
    data = dict(engine.failure.data) if engine.failure is not None else {}
    done = _Done(unit, StepResult(True, "failed", data={**data, "failed": True}))
    undo = engine.types.get(step_type.undo)
    _, problems = bind_args(
        undo.params if undo else (), step_type.undo_args(unit.args, done.result)
    )
    if problems:  # it failed before it knew what it would change (a release's holder)
        return None
    return done


def _undo_units(engine: Engine, item: _Done) -> list[Unit]:
    unit = item.unit
    top = unit.step
    if item.is_plan:
        assert top is not None
        return [engine._unit(rb, f"{unit.key}~{rb.id}", "rollback") for rb in top.rollback]
    if unit.parent is not None:
        parent = engine.runbook.step(unit.parent.split("/")[0])
        if parent is None or not parent.undo:
            return []
    elif top is None or not (top.undo or top.rollback):
        return []
    elif top.rollback:
        return [engine._unit(rb, f"{unit.key}~{rb.id}", "rollback") for rb in top.rollback]
    step_type = engine.types[unit.action]
    if step_type.undo is None:
        engine.options.output.line(f"  {unit.key}: {unit.action} has no undo; left as is")
        return []
    args = step_type.undo_args(unit.args, item.result)
    return [Unit(f"{unit.key}~undo", step_type.undo, args, "rollback",
                 reason=f"undo {unit.key}")]  # fmt: skip
