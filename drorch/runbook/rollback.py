"""Rollback: after a failure under `on_failure: rollback`, undo the completed steps,
newest first. A step's rollback is its explicit `rollback:` steps, or with `rollback:
undo` its action's undo step type (for `plan.execute`: each completed plan step's undo).
A rollback step that fails stops the rollback (status rollback-failed): what is left is
for a person to judge, not for more automation. Rollback steps are journaled like any
other (phase rollback), so a run killed mid-rollback resumes the rollback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drorch.runbook.replay import Replay, Unit

if TYPE_CHECKING:
    from drorch.runbook.engine import Engine, _Done


def roll_back(engine: Engine, replay: Replay) -> str:
    if not replay.rollback_started:
        engine._event("", "rollback", data={"steps": [d.unit.key for d in engine.completed]})
    engine.options.output.line("rolling back the completed steps, newest first")
    done = list(reversed(engine.completed))
    for item in done:
        for unit in _undo_units(engine, item):
            if engine._run_step(unit, replay) == "failed":
                return "rollback-failed"
    return "rolled-back"


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
