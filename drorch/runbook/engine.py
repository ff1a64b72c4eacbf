"""The runbook engine: carry out a runbook's steps in order through the Environment.

    engine = Engine(runbook, cluster, env, RunOptions(confirmer=YesConfirmer()))
    summary = engine.start({"to": "B"})          # or engine.resume(run_id)

Each step: its `when:` is evaluated (false: skipped), its gate asked (declined: the
run stops), then it runs with its timeout and retry policy. Every start, end, answer
and skip is committed to the journal before the next step. A failed step does what
its `on_failure` says: `abort` stops, `continue` goes on, `rollback` restores the state
the run started from (`drorch.runbook.rollback`). A dry run calls each step's check
instead and changes nothing. `plan.execute` expands into the plan's own steps
(`drorch.runbook.planrun`). Resume replays the journal: ended steps are not run again;
a step that started but never ended is first asked its probe.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from drorch.environment import Environment
from drorch.model.types import Cluster
from drorch.runbook.attempts import run_attempts
from drorch.runbook.cancelling import CANCELLED, cancelled_step, retry_sleep
from drorch.runbook.dryworld import Simulated, note_dry_modes
from drorch.runbook.journal import RUNNING, Journal, RunRecord
from drorch.runbook.lock import RunLock, RunLocked
from drorch.runbook.model import OnFailure, Runbook, RunbookStep, substitute
from drorch.runbook.names import Names, StepOutcome
from drorch.runbook.refusals import refuse_interrupted, refuse_unanswerable
from drorch.runbook.replay import Replay, Unit
from drorch.runbook.setup import RunOptions, RunRefused, jsonable, new_run_id, resolve_params
from drorch.runbook.steps.base import (
    StepContext,
    StepFailed,
    StepResult,
    StepType,
    bind_args,
    load_step_types,
)
from drorch.runbook.steps.flow import PLAN_EXECUTE
from drorch.runbook.summary import RunSummary
from drorch.runbook.when import WhenError

DONE = ("ok", "recovered")  # a step that took effect


@dataclass
class _Done:
    unit: Unit
    result: StepResult
    is_plan: bool = False


class Engine:
    def __init__(
        self, runbook: Runbook, cluster: Cluster, env: Environment, options: RunOptions
    ) -> None:
        self.runbook = runbook
        self.cluster = cluster
        self.env = env
        self.options = options
        self.types = load_step_types()
        self.journal = Journal(env.state_dir)
        if options.dry_run:
            self.journal.relax()  # a dry run changes nothing and is never resumed
        self.clock = env.clock
        self.run_id = ""
        self.params: dict[str, object] = {}
        self.facts: dict[str, object] = {}
        self.outcomes: dict[str, StepOutcome] = {}
        self.completed: list[_Done] = []
        self.total = len(runbook.steps)
        self.index = 0
        self.failure: StepFailed | None = None
        self.failed_unit: Unit | None = None  # the step that failed (its rollback undoes it)
        self._answers: dict[str, str] = {}
        self.simulated: Simulated | None = None  # a dry run's world after its plans

    # ---- entry points -------------------------------------------------------------

    def start(self, given: Mapping[str, object]) -> RunSummary:
        self.params = resolve_params(self.runbook, given)
        refuse_unanswerable(self.runbook, self.options)
        self.run_id = new_run_id(self.clock)
        lock = self._lock()
        try:
            if lock is not None:
                refuse_interrupted(self.journal, self.cluster)
            self.journal.create_run(self._record())
            self._event("", "run-start", data={"params": self._json_params()})
            return self._go(Replay())
        finally:
            if lock is not None:
                lock.release()
            self.journal.close()

    def resume(self, run_id: str) -> RunSummary:
        record = self.journal.run(run_id)
        if record is None:
            raise RunRefused("no-such-run", f"no run {run_id!r} in {self.journal.path}")
        if record.dry_run or record.status != RUNNING:
            why = "a dry run" if record.dry_run else f"{record.status}"
            raise RunRefused("not-resumable", f"run {run_id} is {why}; nothing to resume")
        if record.cluster != self.cluster.name:
            raise RunRefused(
                "wrong-cluster", f"run {run_id} is on cluster {record.cluster!r}, "
                f"not {self.cluster.name!r}",
            )  # fmt: skip
        self.run_id = run_id
        self.params = resolve_params(self.runbook, record.params)
        refuse_unanswerable(self.runbook, self.options)
        lock = self._lock()
        try:
            self.journal.set_status(run_id, RUNNING, "resumed", pid=os.getpid())
            self._event("", "resume", data={"user": self.options.user})
            replay = Replay.from_events(self.journal.events(run_id))
            self.options.output.line(f"resuming run {run_id}")
            return self._go(replay)
        finally:
            if lock is not None:
                lock.release()
            self.journal.close()

    # ---- the run ------------------------------------------------------------------

    def _go(self, replay: Replay) -> RunSummary:
        dry = self.options.dry_run
        self.facts.update(replay.facts)
        out = self.options.output
        out.line(f"run {self.run_id}: {self.runbook.name} on {self.cluster.name}"
                 + (" (dry run: nothing is changed)" if dry else ""))  # fmt: skip
        status, message = "succeeded", "every step done"
        would_fail = 0
        for step in self.runbook.steps:
            if step.action == PLAN_EXECUTE:
                from drorch.runbook.planrun import run_plan

                result = run_plan(self, step, replay)
            else:
                result = self._run_step(self._unit(step), replay)
            if result == "would-fail" or (dry and result == "failed"):
                would_fail += 1
                continue
            if result == "declined":
                status, message = "declined", f"stopped: the operator declined {step.id}"
                break
            if result != "failed":
                continue
            failure = self.failure or StepFailed("step-failed", "failed")
            message = f"{step.id} failed: {failure.code}: {failure.message}"
            if failure.code == CANCELLED:  # whoever cancelled stopped what runs (no undo)
                status = "failed"
                break
            if step.on_failure is OnFailure.CONTINUE:
                continue
            status = "failed"
            if step.on_failure is OnFailure.ROLLBACK:
                status = self._rollback(replay)
                message += f"; {status}"
            break
        if dry:
            status = "dry-run-failed" if would_fail else "dry-run"
            message = f"{would_fail} step(s) would fail" if would_fail else "every step checked"
        self.journal.set_status(self.run_id, status, message, ended_at=self.clock.now())
        self._event("", "run-end", status=status, message=message)
        out.line(f"run {self.run_id} {status}: {message}")
        code = self.failure.code if self.failure and status not in ("succeeded",) else ""
        return RunSummary(self.run_id, status, message, code)

    def _unit(self, step: RunbookStep, key: str | None = None, phase: str = "main") -> Unit:
        raw = substitute(dict(step.args), self.params)
        confirm = substitute(step.confirm, self.params) if step.confirm else None
        return Unit(
            key or step.id, step.action, raw if isinstance(raw, dict) else {}, phase, step,
            None, step.on_failure, step.retry, step.timeout,
            str(confirm) if confirm else None,
        )  # fmt: skip

    def _run_step(self, unit: Unit, replay: Replay) -> str:
        """Carry out one unit; returns its status (ok recovered failed skipped declined
        would-run would-fail). Sets self.failure on failure."""
        out = self.options.output
        self.index += 1
        label = f"[{self.index}/{self.total}] {unit.key}"
        st = replay.state(unit.key)
        if st.ended:
            self._remember(unit, st.status, StepResult(st.changed, st.message, data=st.data))
            out.line(f"{label}: {st.status} (journal)")
            if st.status == "failed":
                code = str(st.data.get("code", "step-failed"))
                self.failure = StepFailed(code, st.message, data=st.data)  # its undo's args
                self.failed_unit = unit
            return st.status
        cancelled = None if self.options.dry_run else cancelled_step(self.options.cancel)
        if cancelled is not None:
            return self._fail(unit, cancelled)
        step_type = self.types.get(unit.action)
        if step_type is None:
            return self._fail(unit, StepFailed("unknown-action", f"no step type {unit.action!r}"))
        args, problems = bind_args(step_type.params, unit.args)
        if problems:
            why = "; ".join(p.message for p in problems)
            return self._fail(unit, StepFailed("bad-arg", why))
        unit = Unit(**{**unit.__dict__, "args": args})
        out.line(f"{label}: {step_type.describe(args)}")
        if unit.step is not None and unit.step.when is not None:
            try:
                go = unit.step.when.evaluate(self._names().resolve)
            except WhenError as exc:
                return self._fail(unit, StepFailed("bad-when", exc.message))
            if not go:
                self._event(unit.key, "skip", unit, message=f"when false: {unit.step.when.text}")
                self.outcomes[unit.key] = StepOutcome("skipped")
                out.line(f"  skipped (when false: {unit.step.when.text})")
                return "skipped"
        if st.started and not self.options.dry_run:
            recovered = self._probe(unit, step_type)
            if recovered is not None:
                return recovered
        if unit.confirm and not self._gate(unit):
            return "declined"
        if self.options.dry_run:
            return self._check(unit, step_type, label)
        return self._execute(unit, step_type, label)

    def _probe(self, unit: Unit, step_type: StepType) -> str | None:
        """An interrupted step: ask whether it took effect. None: run it again."""
        ctx = self._ctx(unit, None, None)
        try:
            took = step_type.probe(ctx, unit.args)
        except Exception as exc:  # a probe that cannot tell stops the run
            self._event(unit.key, "probe", unit, status="unknown", message=str(exc))
            if step_type.idempotent:
                return None
            return self._fail(unit, StepFailed(
                "probe-failed", f"interrupted and its probe failed ({exc}); check by hand",
            ))  # fmt: skip
        self._event(unit.key, "probe", unit, status="done" if took else "not-done")
        if not took:
            self.options.output.line("  interrupted earlier, not in effect: running it again")
            return None
        result = StepResult(True, "took effect before the interruption (probe)")
        self._event(unit.key, "end", unit, status="recovered", changed=True,
                    message=result.message, confirmer=self._answers.get(unit.key, ""))  # fmt: skip
        self._remember(unit, "recovered", result)
        self.options.output.line("  already in effect (interrupted earlier): not run again")
        return "recovered"

    def _gate(self, unit: Unit) -> bool:
        out = self.options.output
        prompt = unit.confirm or ""
        if self.options.dry_run:
            out.line(f"  would ask: {prompt}")
            return True
        confirmer = self.options.confirmer
        if confirmer is None:  # _refuse_unanswerable() prevents this for runbook gates
            self._fail(unit, StepFailed("no-confirmer", "nobody can answer the gate"))
            return False
        out.done()
        answer = confirmer.ask(prompt, unit.key)
        self._answers[unit.key] = answer.who
        self._event(unit.key, "confirm", unit, status="approved" if answer.approved else "declined",
                    message=prompt, confirmer=answer.who)  # fmt: skip
        out.line(f"  {'approved' if answer.approved else 'declined'} by {answer.who}")
        if not answer.approved:
            self._event(unit.key, "end", unit, status="declined", confirmer=answer.who,
                        message=f"declined by {answer.who}")  # fmt: skip
            self.outcomes[unit.key] = StepOutcome("declined")
        return answer.approved

    def _check(self, unit: Unit, step_type: StepType, label: str) -> str:
        out = self.options.output
        try:
            result = step_type.check(self._ctx(unit, label, None), unit.args)
        except Exception as exc:  # reported as "would fail"; the dry run goes on
            failure = exc if isinstance(exc, StepFailed) else StepFailed("step-error", repr(exc))
            self._event(unit.key, "end", unit, status="would-fail",
                        message=f"{failure.code}: {failure.message}")  # fmt: skip
            self.outcomes[unit.key] = StepOutcome("would-fail", False, failure.message)
            out.done()
            out.line(f"  WOULD FAIL {failure.code}: {failure.message}")
            return "would-fail"
        self._event(unit.key, "end", unit, status="would-run", changed=result.changed,
                    message=result.message, data={"checked": list(result.checked)})  # fmt: skip
        note_dry_modes(self.facts, result.data)  # later plans use them (dryworld)
        self.outcomes[unit.key] = StepOutcome("would-run", result.changed, result.message)
        out.done()
        out.line(f"  {'would change' if result.changed else 'no change'}: {result.message}")
        for item in result.checked:
            out.line(f"    checked: {item}")
        return "would-run"

    def _execute(self, unit: Unit, step_type: StepType, label: str) -> str:
        before = dict(self.facts)

        def attempt(number: int, deadline: float | None) -> StepResult:
            self._event(unit.key, "start", unit, attempt=number)
            return step_type.run(self._ctx(unit, label, deadline), unit.args)

        def on_retry(number: int, failure: StepFailed, sleep: float) -> None:
            self._event(unit.key, "retry", unit, attempt=number, status=failure.code,
                        message=f"{failure.message}; retrying in {sleep:g}s")  # fmt: skip
            self.options.output.line(f"  attempt {number} failed ({failure.code}); retrying")

        try:
            sleep = retry_sleep(self.clock, self.options.cancel)
            result = run_attempts(self.clock, unit.retry, unit.timeout, attempt, on_retry, sleep)
        except StepFailed as failure:
            self.options.output.done()
            return self._fail(unit, failure)
        self.options.output.done()
        facts = {k: v for k, v in self.facts.items() if before.get(k, object()) != v}
        data = {**dict(result.data), "facts": facts, "checked": list(result.checked)}
        self._event(unit.key, "end", unit, status="ok", changed=result.changed,
                    message=result.message, data=data,
                    confirmer=self._answers.get(unit.key, ""))  # fmt: skip
        self._remember(unit, "ok", result)
        self.options.output.line(f"  {'changed' if result.changed else 'ok'}: {result.message}")
        return "ok"

    def _fail(self, unit: Unit, failure: StepFailed) -> str:
        self.failure = failure
        self.failed_unit = unit
        data = {**dict(failure.data), "code": failure.code}
        self._event(unit.key, "end", unit, status="failed", message=failure.message, data=data,
                    confirmer=self._answers.get(unit.key, ""))  # fmt: skip
        self.outcomes[unit.key] = StepOutcome("failed", False, failure.message, data)
        verdict = "WOULD FAIL" if self.options.dry_run else "FAILED"
        self.options.output.line(f"  {verdict} {failure.code}: {failure.message}")
        return "failed"

    def _remember(self, unit: Unit, status: str, result: StepResult) -> None:
        self.outcomes[unit.key] = StepOutcome(status, result.changed, result.message, result.data)
        if status in DONE:
            self.completed.append(_Done(unit, result))

    def _rollback(self, replay: Replay) -> str:
        from drorch.runbook.rollback import roll_back

        return roll_back(self, replay)

    # ---- helpers ------------------------------------------------------------------

    def _ctx(self, unit: Unit, label: str | None, deadline: float | None) -> StepContext:
        progress = self.options.output.progress(label or unit.key)
        return StepContext(
            self.env, self.cluster, self.params, progress, self.options.dry_run, self.run_id,
            unit.key, deadline, self.options.force, self.options.accept_data_loss, self.facts,
        )  # fmt: skip

    def _names(self) -> Names:
        from drorch.observe import observe

        return Names(self.params, self.facts, self.outcomes,
                     lambda: observe(self.cluster, self.env).snapshot)  # fmt: skip

    def _event(self, step: str, kind: str, unit: Unit | None = None, **fields: object) -> None:
        extra: dict[str, object] = dict(fields)
        if unit is not None:
            extra.setdefault("phase", unit.phase)
            extra.setdefault("action", unit.action)
        self.journal.append(self.run_id, self.clock.now(), step, kind, **extra)  # type: ignore[arg-type]

    def _lock(self) -> RunLock | None:
        if self.options.dry_run:
            return None
        lock = RunLock(self.env.state_dir, self.cluster.name)
        try:
            lock.acquire(self.run_id)
        except RunLocked as exc:
            raise RunRefused("cluster-locked", str(exc)) from exc
        return lock

    def _json_params(self) -> dict[str, object]:
        return {k: jsonable(v) for k, v in self.params.items()}

    def _record(self) -> RunRecord:
        return RunRecord(
            self.run_id, self.cluster.name, self.runbook.name, self.runbook.file,
            self.runbook.text, self.options.config_path, self._json_params(),
            self.options.dry_run, self.options.user, self.options.host, os.getpid(),
            self.clock.now(), None, RUNNING, "",
        )  # fmt: skip
