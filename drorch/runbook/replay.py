"""What the journal says already happened in a run: the engine consults this when it
resumes, so done steps are not run again and interrupted ones are probed first.

    replay = Replay.from_events(journal.events(run_id))
    replay.state("go/03-migrate-live-web")   # -> StepState(started, ended, status, ...)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from drorch.runbook.journal import Event
from drorch.runbook.model import OnFailure, Retry, RunbookStep


@dataclass
class StepState:
    started: bool = False  # an attempt began (or a retry backoff was entered)
    ended: bool = False
    skipped: bool = False
    status: str = ""
    changed: bool = False
    message: str = ""
    data: dict[str, object] = field(default_factory=dict)


@dataclass
class Replay:
    steps: dict[str, StepState] = field(default_factory=dict)
    expansions: dict[str, dict[str, object]] = field(default_factory=dict)
    rollback_started: bool = False
    facts: dict[str, object] = field(default_factory=dict)

    @staticmethod
    def from_events(events: list[Event]) -> Replay:
        out = Replay()
        for ev in events:
            st = out.steps.setdefault(ev.step, StepState())
            if ev.kind in ("start", "retry"):
                st.started = True
            elif ev.kind == "skip":
                st.skipped, st.ended, st.status = True, True, "skipped"
            elif ev.kind == "end":
                st.ended, st.status, st.changed = True, ev.status, ev.changed
                st.message, st.data = ev.message, dict(ev.data)
                facts = ev.data.get("facts")
                if isinstance(facts, dict):
                    out.facts.update(facts)
            elif ev.kind == "expand":
                out.expansions[ev.step] = dict(ev.data)
            elif ev.kind == "rollback":
                out.rollback_started = True
        return out

    def state(self, key: str) -> StepState:
        return self.steps.get(key, StepState())


@dataclass(frozen=True)
class Unit:
    """One step as the engine carries it out: a runbook step, a plan step under a
    `plan.execute`, or a rollback step. `args` are bound (typed)."""

    key: str
    action: str
    args: Mapping[str, object]
    phase: str = "main"  # main | rollback
    step: RunbookStep | None = None  # the runbook step it came from (top level)
    parent: str | None = None  # the plan.execute key, for plan steps
    on_failure: OnFailure = OnFailure.ABORT
    retry: Retry = field(default_factory=Retry)
    timeout: float | None = None
    confirm: str | None = None
    reason: str = ""
    data_loss: bool = False
