"""Stand-ins for every step type a plan maps to, for plan.execute resume tests in a
subprocess (they take the real names, so they are never imported into the test process).

Each writes "ACTION TARGET" to the ledger in $DRORCH_TEST_LEDGER (not idempotent; the
probe reads the ledger)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from drorch.runbook.expand import ACTION_STEP_TYPES
from drorch.runbook.steps.base import (
    REQUIRED,
    STEP_TYPES,
    Param,
    ParamKind,
    StepContext,
    StepResult,
    StepType,
    load_step_types,
)
from drorch.testing.ledger_steps import _append, lines


class _StandIn(StepType):
    """A plan step stand-in that writes to the test ledger."""

    params = (
        Param("target", ParamKind.STR, ""),
        Param("site", ParamKind.STR, "", default=""),
        Param("node", ParamKind.STR, "", default=""),
    )

    def _line(self, args: Mapping[str, object]) -> str:
        return f"{self.name} {args['target']}"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        return StepResult(True, f"would {self._line(args)}")

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return self._line(args) in lines(os.environ["DRORCH_TEST_LEDGER"])

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        _append(os.environ["DRORCH_TEST_LEDGER"], self._line(args))
        return StepResult(True, self._line(args))


_KINDS = {str: ParamKind.STR, int: ParamKind.INT, float: ParamKind.FLOAT,
          bool: ParamKind.BOOL, tuple: ParamKind.STR_LIST}  # fmt: skip


def _action_params(action: object) -> tuple[Param, ...]:
    """The Action's typed Step.params (drorch.decide.params), when that module exists."""
    try:
        from drorch.decide import params as spec  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return ()
    table = getattr(spec, "ACTION_PARAMS", {})
    empty = {str: "", int: 0, float: 0.0, bool: False, tuple: ()}
    return tuple(
        Param(
            key,
            _KINDS.get(p.kind, ParamKind.STR),
            "",
            default=REQUIRED if p.required else empty.get(p.kind, ""),
        )
        for key, p in dict(table.get(action, {})).items()
    )


def install() -> None:
    """Replace the real plan step types (loaded first, so they cannot register over
    the stand-ins later) with ledger-writing stand-ins."""
    load_step_types()
    for action, name in ACTION_STEP_TYPES.items():
        params = _StandIn.params + _action_params(action)
        STEP_TYPES[name] = type(name, (_StandIn,), {"name": name, "params": params})()
