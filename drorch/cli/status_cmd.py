"""`drorch status`: a health check, like `pcs status`. It shows the cluster as far as it
can be observed and the coded reports of everything wrong, and exits 0 healthy,
1 degraded (warnings), 2 broken (errors, or anything that could not be observed)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from drorch.cli.loading import cluster_environment, config_option
from drorch.cli.output import format_option, render


@click.command()
@config_option
@format_option()
def status(config: Path, fmt: str) -> None:
    """Sites, nodes, quorum timings, replication per volume and node, VM states per site,
    and every problem found (severity, code, message, what to do). Exit 0 healthy,
    1 degraded, 2 broken."""
    from drorch.decide.health import exit_code
    from drorch.observe import observe
    from drorch.status import health_reports, status_data

    with cluster_environment(config) as loaded:
        cluster = loaded.cluster
        obs = observe(cluster, loaded.env)
        reports = health_reports(obs, list(loaded.problems))
        verdict = exit_code(reports)
        data = status_data(cluster, obs, reports, verdict)
        if fmt == "table":
            data["timings"] = ", ".join(f"{k} {v}" for k, v in data["timings"].items())
            data["active_site"] = f"{data['active_site']} ({data.pop('active_because')})"
            if not data["problems"]:
                data["problems"] = "none: every invariant holds and every driver answered"
        render(data, fmt)
    sys.exit(verdict)
