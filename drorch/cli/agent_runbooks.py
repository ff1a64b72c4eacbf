"""The runbook runs an agent starts (automatic takeover, escalation of a failing group).

The agent and the runbook engine are sibling layers that may not import each other; the
CLI, which sees both, gives `drorch agent run` this runner. Each run is an ordinary
engine run, journaled in the state directory like any `drorch runbook run`, with its
own Environment (the agent loop's is not shared across threads). Gates are answered by
the standing consent the cluster file gives (`agent.failover: automatic`), recorded in
the journal as the agent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from drorch.agent.jobs import RunbookRunner, Runbooks
from drorch.cancel import Cancel
from drorch.model.types import Cluster
from drorch.runbook.lock import RunLock
from drorch.runbook.setup import Output

log = logging.getLogger("drorch.agent")


class LogOutput(Output):
    """The engine's lines go to the agent's log."""

    def line(self, text: str) -> None:
        log.info("runbook: %s", text)


def load_checked(path: Path) -> str | None:
    """None when the runbook loads and validates, else every problem, one a line."""
    from drorch.model.reports import ConfigError
    from drorch.runbook.load import load_runbook

    try:
        load_runbook(path)
    except ConfigError as exc:
        return "\n".join(str(r) for r in exc.reports)
    return None


AGENT_USER = "agent "  # every run an agent starts is journaled as "agent NODE"


def supersede_agent_runs(state_dir: Path, cluster: Cluster, user: str) -> list[str]:
    """Abandon the interrupted runs an agent started (a site-failover, a cluster start or
    an escalation whose agent died with its site): what the agent runs is decided afresh
    from what it observes, and the new run plans from the cluster as it is now, so such a
    run must not refuse every later one (`interrupted-run`) until a person comes. Only
    while nothing holds the run lock (the run's process is gone). A run an operator
    started is never abandoned by an agent: it still refuses, and the agent logs why."""
    from drorch.runbook.journal import RUNNING, Journal

    if RunLock(state_dir, cluster.name).holder() is not None:
        return []
    journal = Journal(state_dir)
    done = []
    for record in journal.runs(cluster.name):
        if record.status != RUNNING or record.dry_run or not record.user.startswith(AGENT_USER):
            continue
        why = (f"interrupted ({record.user}'s process is gone); superseded by {user}, which"
               " decides afresh from what it observes")  # fmt: skip
        journal.set_status(record.run_id, "abandoned", why, ended_at=None)
        log.warning("run %s (%s) abandoned: %s", record.run_id, record.runbook, why)
        done.append(record.run_id)
    return done


def runbook_runner(cluster: Cluster, config: Path, *, user: str, state_dir: Path) -> RunbookRunner:
    def run(runbook: Path, given: Mapping[str, object], cancel: Cancel) -> tuple[bool, str]:
        from drorch.envbuild import build_environment_report
        from drorch.runbook.engine import Engine
        from drorch.runbook.gates import YesConfirmer
        from drorch.runbook.load import load_runbook
        from drorch.runbook.setup import ParamError, RunOptions, RunRefused

        supersede_agent_runs(state_dir, cluster, user)
        rb = load_runbook(runbook)
        declared = {p.name for p in rb.params}
        params = {k: v for k, v in given.items() if k in declared}
        env, problems = build_environment_report(cluster, config.resolve().parent)
        env.state_dir = state_dir
        for p in problems:
            log.warning("runbook %s: driver unavailable: %s", rb.name, p)
        options = RunOptions(
            confirmer=YesConfirmer(user), output=LogOutput(), user=user,
            config_path=str(config), cancel=cancel,
        )  # fmt: skip
        try:
            summary = Engine(rb, cluster, env, options).start(params)
        except RunRefused as exc:
            return False, f"{runbook.name} refused: {exc.code}: {exc.message}"
        except ParamError as exc:
            return False, f"{runbook.name}: " + "; ".join(exc.problems)
        finally:
            env.close()
        text = f"run {summary.run_id} {summary.status}: {summary.message}"
        return summary.status == "succeeded", text

    return run


def agent_runbooks(cluster: Cluster, config: Path, *, node: str, state_dir: Path) -> Runbooks:
    return Runbooks(
        runbook_runner(cluster, config, user=f"{AGENT_USER}{node}", state_dir=state_dir),
        load_checked,
        RunLock(state_dir, cluster.name).holder,
    )
