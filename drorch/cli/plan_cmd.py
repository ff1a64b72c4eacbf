"""`drorch plan migrate|failover|start --to SITE`: show the ordered steps before anything moves.

Exit 0 when the plan is runnable, 1 when something blocks it (the blockers say what), 2
when `--to` names no site (a usage error, as everywhere).
Blockers are coded reports; `--force` relaxes only the forceable ones (e.g. a replica that
could not be observed, which its wait-in-sync step re-checks at run time), never a split
brain risk or a replica nothing can start from."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from drorch.cli.exits import ExitCode
from drorch.cli.loading import cluster_environment, config_option
from drorch.cli.output import format_option, render


@click.group()
def plan() -> None:
    """Plan a migration, failover or start (read only: nothing is changed)."""


def _show(config: Path, to_site: str, fmt: str, kind: str, force: bool) -> None:
    from drorch.decide.plan import plan_failover, plan_migration
    from drorch.decide.start import plan_start
    from drorch.observe import observe

    with cluster_environment(config) as loaded:
        snapshot = observe(loaded.cluster, loaded.env).snapshot
    planners = {"migrate": plan_migration, "failover": plan_failover, "start": plan_start}
    result = planners[kind](snapshot, to_site)
    blocking = result.blocking(force)
    data: dict[str, Any] = result.as_dict()
    data["notes"] += [
        {"code": "config", "message": p, "severity": "warning", "forceable": False}
        for p in loaded.problems
    ]
    data["blocking"] = [b.code for b in blocking]
    if fmt == "table":
        titles = {"migration": "planned migration", "start": "start"}
        title = titles.get(result.kind, "failover")
        head = f"{title} {result.from_site} -> {result.to_site}"
        if result.runnable:
            verdict = "runnable"
        elif not blocking:
            verdict = "runnable with --force"
        else:
            verdict = "BLOCKED"
        if result.needs_data_loss_ack:
            verdict += ", needs a data-loss acknowledgement"
        lines = [f"{head}: {len(result.steps)} steps, {verdict}"]
        lines += [f"note: {n['message']}" for n in data["notes"]]
        for b in result.blockers:
            if b in blocking:
                tag = "forceable with --force" if b.forceable else "not forceable"
                lines.append(f"blocked: {b.message} [{b.code}, {tag}]")
            else:
                lines.append(f"forced: {b.message} [{b.code}]")
        click.echo("\n".join(lines) + "\n")
        rows = [
            {
                "#": i,
                "action": s.action.value,
                "target": s.target,
                "where": s.node or s.site,
                "reason": ("[DATA LOSS] " if s.data_loss else "") + s.reason,
            }
            for i, s in enumerate(result.steps, start=1)
        ]
        render(rows, fmt)
    else:
        render(data, fmt)
    if any(b.code == "unknown-site" for b in blocking):
        sys.exit(ExitCode.USAGE)
    if blocking:
        sys.exit(ExitCode.FAILED)


force_option = click.option(
    "--force",
    is_flag=True,
    help="Relax the forceable blockers (only those; the report says which).",
)


@plan.command()
@click.option("--to", "to_site", required=True, help="The site to move to.")
@config_option
@force_option
@format_option()
def migrate(to_site: str, config: Path, force: bool, fmt: str) -> None:
    """Planned migration (both sites up): live-migrate what can move, cold-move the rest."""
    _show(config, to_site, fmt, "migrate", force)


@plan.command()
@click.option("--to", "to_site", required=True, help="The surviving site to take over at.")
@config_option
@force_option
@format_option()
def failover(to_site: str, config: Path, force: bool, fmt: str) -> None:
    """Failover after losing a site: fence-safe wait, promote, start everything."""
    _show(config, to_site, fmt, "failover", force)


@plan.command()
@click.option("--to", "to_site", required=True, help="The site to start the cluster at.")
@config_option
@force_option
@format_option()
def start(to_site: str, config: Path, force: bool, fmt: str) -> None:
    """Start a cluster that runs nowhere (both sites up, every volume secondary)."""
    _show(config, to_site, fmt, "start", force)
