"""`drorch drill cleanup RUN_ID`: remove what a test-recovery run left behind (after a
crash, a kill -9 or a failed rollback), from its write-ahead manifest.

The run must not be in progress (it holds the cluster's run lock). Cleanup removes
every trace (drorch.virt.testcopy), then gives up the interrupted runbook run
(`abandoned`, so it no longer blocks the next drill) and closes its history row as
`cleaned`. Running it twice is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from drorch.drill.history import History, Reason
from drorch.environment import Environment
from drorch.model.types import Cluster
from drorch.runbook.journal import RUNNING, Journal
from drorch.runbook.lock import RunLock
from drorch.runbook.steps.recovery import views_of
from drorch.virt.base import VMState
from drorch.virt.testcopy import Trace, cleanup, open_manifest


class CleanupRefused(RuntimeError):
    pass


@dataclass
class CleanupReport:
    run_id: str
    removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    abandoned: bool = False


def cleanup_run(
    cluster: Cluster, env: Environment, run_id: str, log: Callable[[str], None] = lambda s: None
) -> CleanupReport:
    holder = RunLock(env.state_dir, cluster.name).holder()
    if holder == run_id:
        raise CleanupRefused(f"run {run_id} is still in progress; its own rollback or "
                             "cleanup step removes its traces")  # fmt: skip
    m = open_manifest(env.state_dir, run_id)
    report = CleanupReport(run_id)

    def undefine(t: Trace) -> str:
        hv = env.hypervisor(t.node)
        state = hv.state(t.name)
        if state == VMState.UNDEFINED:
            return "not defined"
        if state != VMState.SHUTOFF:
            hv.destroy(t.name)
        hv.undefine(t.name)
        return f"destroyed and undefined (was {state})"

    def note(line: str) -> None:
        report.removed.append(line)
        log(line)

    report.problems = cleanup(m, env.runner, undefine, note, views=views_of(env))
    if report.problems:
        return report
    journal = Journal(env.state_dir)
    try:
        record = journal.run(run_id)
        if record is not None and record.status == RUNNING:
            journal.set_status(run_id, "abandoned", "interrupted; its test copies were "
                               "removed by `drorch drill cleanup`")  # fmt: skip
            report.abandoned = True
    finally:
        journal.close()
    with History(env.state_dir) as h:
        row = h.get(run_id)
        if row is not None and row.result in ("running", "interrupted"):
            h.finish(row.id, env.clock.now(), "cleaned", run_id=run_id, reasons=[Reason(
                "interrupted", f"the run was interrupted; `drorch drill cleanup` removed "
                f"{len(m.traces)} trace(s)")])  # fmt: skip
    return report
