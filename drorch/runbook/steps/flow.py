"""Flow step types owned by the engine: `wait`."""

from __future__ import annotations

import math
from collections.abc import Mapping

from drorch.runbook.steps.base import (
    Param,
    ParamKind,
    StepContext,
    StepResult,
    StepType,
    register,
)


@register
class Wait(StepType):
    """Wait a fixed time (e.g. let a service settle before the next check).

    Sleeps on the injected clock with a progress line; the step's `timeout` cuts it
    short (step-timeout). Changes nothing, so it is always safe to run again."""

    name = "wait"
    params = (
        Param("seconds", ParamKind.DURATION, "How long to wait (30s, 5m, 250ms or seconds)."),
        Param("reason", ParamKind.STR, "Why, for the log and the report.", default=""),
    )
    idempotent = True

    def describe(self, args: Mapping[str, object]) -> str:
        why = f" ({args['reason']})" if args.get("reason") else ""
        return f"wait {_secs(args)}{why}"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        return StepResult(False, f"would {self.describe(args)}")

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return False  # a wait has no lasting effect; an interrupted one waits again

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        total = float(_num(args["seconds"]))
        start = ctx.clock.monotonic()
        # bounded: at most ceil(total) + 1 one-second sleeps on a clock that advances
        for _ in range(math.ceil(total) + 1):
            left = total - (ctx.clock.monotonic() - start)
            if left <= 0:
                break
            ctx.progress.update(total - left, total, f"{left:.0f}s left")
            ctx.sleep(min(1.0, left))
        ctx.progress.update(total, total, "done")
        return StepResult(False, f"waited {_secs(args)}", data={"waited_s": total})


def _num(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected seconds, got {value!r}")  # bind_args typed it already


def _secs(args: Mapping[str, object]) -> str:
    return f"{_num(args['seconds']):g}s"


PLAN_EXECUTE = "plan.execute"


@register
class PlanExecute(StepType):
    """Carry out a drorch plan (migration, failover, cold migration, start), a step per plan step.

    Observes, computes the plan as `drorch plan` shows it, and runs each of its steps
    as a step of its own.

    The engine expands it when it is reached: the plan computed then is written to the
    journal, so a resumed run continues the same plan. Blockers stop it; forceable ones
    only with `--force`, data-loss steps only with `--accept-data-loss`. Its rollback
    (`rollback: undo`) undoes the completed plan steps in reverse."""

    name = PLAN_EXECUTE
    params = (
        Param(
            "kind",
            ParamKind.STR,
            "Which plan: migration, failover, cold-migration (a migration that moves"
            " every VM cold: the cold drill), or start (a cluster that runs nowhere).",
            choices=("migration", "failover", "cold-migration", "start"),
        ),
        Param("to", ParamKind.STR, "The site to move to."),
        Param(
            "fallback",
            ParamKind.STR,
            "What a live migration that does not converge does: fail the step, or move"
            " that VM cold (shut down, switch its volumes, start at the target).",
            default="fail",
            choices=("fail", "cold"),
        ),
    )

    def describe(self, args: Mapping[str, object]) -> str:
        cold = ", cold fallback" if args.get("fallback") == "cold" else ""
        return f"plan {args['kind']} to {args['to']}{cold}"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        raise TypeError("plan.execute is expanded by the engine")  # pragma: no cover

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        raise TypeError("plan.execute is expanded by the engine")  # pragma: no cover

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        raise TypeError("plan.execute is expanded by the engine")  # pragma: no cover
