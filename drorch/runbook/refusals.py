"""Why a run must not start: checks the engine makes before its first step.

Each raises `RunRefused` with a stable code and a sentence that says the way out.
"""

from __future__ import annotations

from drorch.model.types import Cluster
from drorch.runbook.journal import RUNNING, Journal
from drorch.runbook.model import Runbook
from drorch.runbook.setup import RunOptions, RunRefused


def refuse_interrupted(journal: Journal, cluster: Cluster) -> None:
    """`interrupted-run`: a real (not dry) run of the cluster is still `running` in the
    journal: it must be resumed or abandoned first."""
    for record in journal.runs(cluster.name):
        if record.status == RUNNING and not record.dry_run:
            raise RunRefused(
                "interrupted-run",
                f"run {record.run_id} ({record.runbook}) on cluster {cluster.name!r} "
                f"was interrupted; `drorch runbook resume {record.run_id}` continues it, "
                f"`drorch runbook abandon {record.run_id}` gives it up",
            )


def refuse_unanswerable(runbook: Runbook, options: RunOptions) -> None:
    """`needs-confirmation`: the runbook has gates and nobody can answer them (a dry run
    only says what it would ask)."""
    if options.dry_run or options.confirmer is not None:
        return
    gated = [s.id for s in runbook.steps if s.confirm]
    if gated:
        raise RunRefused(
            "needs-confirmation",
            f"step(s) {', '.join(gated)} ask for confirmation: run on a terminal or pass --yes",
        )
