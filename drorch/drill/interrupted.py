"""Drills left `running` in the history by a process that died (kill -9, a crash, a
host restart): found, marked `interrupted` with the reason, and never counted as
running again: they keep no site busy.

    found = sweep(history, ProcessProbe(state_dir), clock.now(), by="the scheduler")

A row that is still live (its process runs: a drill started by an earlier scheduler
outlives it) is returned in `live`, for the scheduler to keep its sites busy until it
ends.

The runbook run of an interrupted drill is still `running` in the journal, and the next
drill's `run-interrupted` guard waits for it. When its journal shows it changed nothing
(every step that ended changed nothing, and a step under way, if any, only looks: a
`check.*`, a wait, a monitor), the scheduler abandons it (`settle`): nothing is left to
undo, so it must not hold back the next drill. Otherwise it may have moved the cluster
half-way, and only an operator (or `drorch drill cleanup` for a test recovery) decides
what becomes of it; the reason says how.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drorch.drill.history import DrillRow, History, Reason
from drorch.drill.liveness import DrillProbe
from drorch.runbook.journal import RUNNING, Event, Journal

INTERRUPTED = "interrupted"


@dataclass
class Sweep:
    live: list[DrillRow] = field(default_factory=list)
    interrupted: list[tuple[DrillRow, Reason]] = field(default_factory=list)


# Steps that only look (or wait): one of them under way when the drill died changed
# nothing. A plan's own step changes nothing either: its plan steps are judged one by one.
LOOKING = frozenset({
    "wait", "monitor.verify", "replication.wait_in_sync", "vm.verify_alive",
    "recovery.verify", "plan.execute",
})  # fmt: skip


def changed_nothing(events: Sequence[Event]) -> tuple[bool, str]:
    """Whether a run's journal shows it changed nothing, and which step says so."""
    ended: dict[str, Event] = {}
    started: dict[str, Event] = {}
    for e in events:
        if e.kind == "start":
            started[e.step] = e
        elif e.kind == "end" and e.step:
            ended[e.step] = e
    for step, e in ended.items():
        if e.changed:
            return False, f"{step} changed the cluster"
    under_way = [e for step, e in started.items() if step not in ended]
    for e in under_way:
        if not (e.action.startswith("check.") or e.action in LOOKING):
            return False, f"{e.step} ({e.action}) was under way"
    last = under_way[-1].step if under_way else (list(ended)[-1] if ended else "")
    return True, f"it stopped in {last}" if last else "it had not begun a step"


def settler(state_dir: Path, now: Callable[[], float]) -> Callable[[DrillRow], str | None]:
    """Abandon an interrupted drill's runbook run that changed nothing; returns what
    was done (None: the run is left as it was)."""

    def settle(row: DrillRow) -> str | None:
        if not row.run_id:
            return None
        journal = Journal(state_dir)
        try:
            record = journal.run(row.run_id)
            if record is None or record.status != RUNNING:
                return None
            untouched, where = changed_nothing(journal.events(row.run_id))
            if not untouched:
                return None
            journal.set_status(row.run_id, "abandoned", f"interrupted before it changed "
                               f"anything ({where}); abandoned by the drill scheduler",
                               ended_at=now())  # fmt: skip
            return (f"Its runbook run {row.run_id} had changed nothing ({where}): it is "
                    "abandoned, so it does not hold back the next drill")  # fmt: skip
        finally:
            journal.close()

    return settle


def interrupted_reason(
    row: DrillRow, by: str, exit_status: int | None = None, settled: str | None = None
) -> Reason:
    """Why `row` is interrupted, and what to do about its runbook run."""
    proc = row.data.get("process")
    who = (
        f"its process (pid {proc.get('pid')} on {proc.get('host')})"
        if isinstance(proc, dict) else "its process"
    )  # fmt: skip
    how = f" (exit status {exit_status})" if exit_status is not None else ""
    text = (f"{who} ended{how} without recording a result: killed, crashed or its host "
            f"restarted; found by {by}")  # fmt: skip
    if settled:
        text += f". {settled}"
    elif row.run_id:
        text += (f". Its runbook run {row.run_id} is left as it was: `drorch runbook resume "
                 f"{row.run_id}` finishes it, `drorch runbook abandon {row.run_id}` gives "
                 "it up")  # fmt: skip
        if row.kind == "test-recovery":
            text += f", `drorch drill cleanup {row.run_id}` removes its test copies"
    else:
        text += "; it had not started its runbook"
    return Reason(INTERRUPTED, text)


def sweep(
    history: History, probe: DrillProbe, now: float, *, by: str,
    keys: set[tuple[str, str]] | None = None, exit_status: int | None = None,
    settle: Callable[[DrillRow], str | None] = lambda row: None,
) -> Sweep:  # fmt: skip
    """Mark every `running` row (of `keys`, or all) whose process is gone; `settle`
    may resolve its runbook run first (see `settler`)."""
    out = Sweep()
    for row in history.rows(limit=100000, results=("running",)):
        if keys is not None and (row.cluster, row.drill) not in keys:
            continue
        if probe.is_live(row):
            out.live.append(row)
            continue
        reason = interrupted_reason(row, by, exit_status, settle(row))
        history.interrupt(row.id, now, reason)
        row.result, row.ended_at, row.reasons = INTERRUPTED, now, [reason]
        out.interrupted.append((row, reason))
    return out
