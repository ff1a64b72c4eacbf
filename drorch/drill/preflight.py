"""The guards a drill must pass before it starts. A drill that fails one is not run:
it is recorded as `skipped` with every reason (a code and a sentence), so the history
shows why the weekly drill did not happen.

| code | the drill does not start when |
|---|---|
| `cluster-unhealthy` | `drorch status` is not healthy (its warnings and errors are listed) |
| `not-in-sync` | a replica is not UpToDate, Connected and with nothing left to send |
| `not-at-primary-site` | the cluster runs away from its primary site (a failback is pending) |
| `run-in-progress` | a failover, migration, another drill or any runbook run holds the cluster |
| `hurricane-migration-pending` | an interrupted migration run waits to be resumed or abandoned |
| `run-interrupted` | another interrupted run waits to be resumed or abandoned |
| `maintenance-mode` | `drorch maintenance on` is in force for the cluster |
"""

from __future__ import annotations

from pathlib import Path

from drorch.decide.health import Health, exit_code
from drorch.decide.snapshot import active_site
from drorch.drill.history import Reason
from drorch.environment import Environment
from drorch.model.types import Cluster
from drorch.observe import observe
from drorch.runbook.journal import RUNNING, Journal, JournalError
from drorch.runbook.lock import RunLock
from drorch.status import VERDICT, health_reports

MIGRATION_RUNBOOKS = ("hurricane", "migrat")  # runbook names that move the cluster


def maintenance_file(state_dir: Path, cluster: Cluster) -> Path:
    """Where `drorch maintenance on` (the agent) records maintenance mode."""
    from drorch.agent.daemon import agent_paths

    return agent_paths(state_dir, cluster, "")["maintenance"]


def health_reasons(cluster: Cluster, env: Environment, problems: list[str]) -> list[Reason]:
    obs = observe(cluster, env)
    reports = health_reports(obs, problems)
    out: list[Reason] = []
    verdict = exit_code(reports)
    if verdict != 0:
        listed = "; ".join(
            f"{'error' if r.severity == Health.ERROR else 'warning'} {r.code}: {r.message}"
            for r in reports
        )
        out.append(Reason("cluster-unhealthy", f"`drorch status` is {VERDICT[verdict]}: {listed}"))
    snap = obs.snapshot
    for (volume, site), r in sorted(snap.replicas.items()):
        if not r.in_sync:
            out.append(Reason(
                "not-in-sync",
                f"volume {volume} at {site} ({r.node}) is {r.disk}/{r.connection}, "
                f"{r.out_of_sync_bytes} bytes out of sync, {r.lag_bytes} bytes of lag",
            ))  # fmt: skip
    for vol in cluster.volumes:
        seen = {where for (v, where) in snap.replicas if v == vol.name}
        for s in cluster.sites:
            if s.name not in seen:
                out.append(Reason("not-in-sync", f"volume {vol.name} at {s.name}: "
                                  "its replica could not be observed"))  # fmt: skip
    home, why = active_site(snap)
    if home != cluster.primary_site:
        out.append(Reason(
            "not-at-primary-site",
            f"the cluster runs at {home} ({why}), not at its primary site "
            f"{cluster.primary_site}: fail back before drilling",
        ))  # fmt: skip
    return out


def run_reasons(cluster: Cluster, state_dir: Path, own_run: str = "") -> list[Reason]:
    """Runs that hold or wait on the cluster (the runbook lock and journal)."""
    out: list[Reason] = []
    holder = RunLock(state_dir, cluster.name).holder()
    try:
        journal = Journal(state_dir)
    except JournalError as exc:
        return [Reason("run-in-progress", f"the runbook journal cannot be read: {exc}")]
    try:
        if holder is not None and holder != own_run:
            rec = journal.run(holder) if holder else None
            what = f"run {holder} ({rec.runbook})" if rec else f"run {holder or '?'}"
            out.append(Reason("run-in-progress", f"{what} holds cluster {cluster.name}: "
                              "a failover, migration or drill is running"))  # fmt: skip
        for rec in journal.runs(cluster.name, limit=200):
            if rec.status != RUNNING or rec.dry_run or rec.run_id in (holder, own_run):
                continue
            moving = any(word in rec.runbook for word in MIGRATION_RUNBOOKS)
            out.append(Reason(
                "hurricane-migration-pending" if moving else "run-interrupted",
                f"run {rec.run_id} ({rec.runbook}) was interrupted and waits: "
                f"`drorch runbook resume {rec.run_id}` or `drorch runbook abandon {rec.run_id}`",
            ))  # fmt: skip
    finally:
        journal.close()
    return out


def maintenance_reasons(cluster: Cluster, state_dir: Path) -> list[Reason]:
    if maintenance_file(state_dir, cluster).exists():
        return [Reason("maintenance-mode", f"cluster {cluster.name} is in maintenance mode "
                       "(`drorch maintenance off` ends it)")]  # fmt: skip
    return []


def preflight(
    cluster: Cluster, env: Environment, problems: list[str] | None = None
) -> list[Reason]:
    """Every reason the drill must not start now (empty: it may)."""
    state = env.state_dir
    return [
        *maintenance_reasons(cluster, state),
        *run_reasons(cluster, state),
        *health_reasons(cluster, env, list(problems or [])),
    ]
