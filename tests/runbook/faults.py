"""Failure injection for rollback tests: an Engine whose step types fail the N-th
main-phase step run, either before it acts (`when="before"`) or after it took effect
(`when="after"`: the step did its work, then reported a failure, as a step does whose
confirmation times out). Rollback units (keys with `~`) are never failed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drorch.runbook.engine import Engine
from drorch.runbook.gates import YesConfirmer
from drorch.runbook.load import parse_runbook_text
from drorch.runbook.setup import RunOptions
from drorch.runbook.steps.base import StepContext, StepFailed, StepResult, StepType
from drorch.runbook.summary import RunSummary

if TYPE_CHECKING:
    from tests.runbook.steps_lab import SimLab

INJECTED = "injected"
HURRICANE = ("hurricane-planned-migration.yaml", {"to": "B", "from": "A"})
LIVE = ("drills/live.yaml", {"to": "B", "home": "A"})
COLD = ("drills/cold.yaml", {"to": "B", "home": "A"})


class Killed(BaseException):
    """The runner died (as with kill -9): nothing after this is journaled."""


@dataclass
class Injector:
    fail_at: int  # 1-based count of main-phase step runs; 0: never
    when: str = "before"
    key: str = ""  # or: fail the run of the step with this key
    then: Callable[[], None] | None = None  # "after": what else goes wrong before it fails
    kill_after: str = ""  # "kill -9" the run right after this rollback unit did its work
    undone: list[str] = field(default_factory=list)  # keys of rollback runs, in order
    ran: list[str] = field(default_factory=list)  # keys of main-phase runs, in order
    failed: str = ""
    # the simulated witness is down (sim-witness.down) during the first `witness_down_for`
    # runs of the step `witness_down` (-1: all of them), and answers again after: the
    # step itself fails, with its own code (witness-unreachable), as with a real outage
    witness_down: str = ""
    witness_down_for: int = 0

    def wrap(self, engine: Engine) -> None:
        engine.types = {name: _Faulty(t, self) for name, t in engine.types.items()}


class _Faulty(StepType):
    def __init__(self, inner: StepType, injector: Injector) -> None:
        self.inner = inner
        self.injector = injector
        self.name = inner.name  # type: ignore[misc]
        self.params = inner.params  # type: ignore[misc]
        self.undo = inner.undo  # type: ignore[misc]
        self.idempotent = inner.idempotent  # type: ignore[misc]
        self.undo_restores = getattr(inner, "undo_restores", False)  # type: ignore[misc]

    def describe(self, args: Mapping[str, object]) -> str:
        return self.inner.describe(args)

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        return self.inner.check(ctx, args)

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return self.inner.probe(ctx, args)

    def undo_args(self, args: Mapping[str, object], result: StepResult) -> dict[str, object]:
        return self.inner.undo_args(args, result)

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        inj = self.injector
        if "~" in ctx.step_id:
            inj.undone.append(ctx.step_id)
            result = self.inner.run(ctx, args)
            if ctx.step_id == inj.kill_after:
                raise Killed(ctx.step_id)  # its end is never journaled
            return result
        inj.ran.append(ctx.step_id)
        if ctx.step_id == inj.witness_down:
            self._witness_outage(ctx, inj.ran.count(ctx.step_id))
        if (ctx.step_id != inj.key) if inj.key else (len(inj.ran) != inj.fail_at):
            return self.inner.run(ctx, args)
        inj.failed = ctx.step_id
        data: Mapping[str, object] = {}
        if inj.when == "after":  # it did its work, and reports what it knew when it failed
            data = self.inner.run(ctx, args).data
            if inj.then is not None:
                inj.then()
        raise StepFailed(INJECTED, f"failure injected {inj.when} {ctx.step_id}", data=data)

    def _witness_outage(self, ctx: StepContext, attempt: int) -> None:
        from drorch.runbook.steps._where import sim_dir

        folder = sim_dir(ctx)
        assert folder is not None, "witness outages are simulated on the sim lab only"
        marker = folder / "sim-witness.down"
        lasting = self.injector.witness_down_for < 0
        if lasting or attempt <= self.injector.witness_down_for:
            marker.write_text("1\n")
        else:
            marker.unlink(missing_ok=True)


def run(lab: SimLab, name: str, params: dict[str, object], injector: Injector) -> RunSummary:
    """Run the shipped runbook `name` (under runbooks/) on the lab with `injector`."""
    from tests.conftest import REPO

    text = (REPO / "runbooks" / name).read_text()
    opts = RunOptions(output=lab.output, user="t", confirmer=YesConfirmer("t"))
    engine = Engine(parse_runbook_text(text, name), lab.cluster, lab.env, opts)
    injector.wrap(engine)
    return engine.start(params)


def resume(lab: SimLab, name: str, run_id: str, injector: Injector) -> RunSummary:
    """Resume run `run_id` of the shipped runbook `name` with `injector`."""
    from tests.conftest import REPO

    text = (REPO / "runbooks" / name).read_text()
    opts = RunOptions(output=lab.output, user="t", confirmer=YesConfirmer("t"))
    engine = Engine(parse_runbook_text(text, name), lab.cluster, lab.env, opts)
    injector.wrap(engine)
    return engine.resume(run_id)
