"""`drorch migrate --to SITE`, `drorch failover --to SITE`, `drorch failback`, `drorch start`:
the shipped runbooks (runbooks/hurricane-planned-migration.yaml, site-failover.yaml,
failback.yaml, cluster-start.yaml)
with their site params filled in from what is observed.

Each is exactly `drorch runbook run FILE -c CONFIG --param ...` — same journal, lock,
gates, dry run, resume and report — so `drorch runbook show RUN_ID` reports it. Exit
codes as `drorch runbook run` (0 done, 1 failed, 2 usage/config, 3 refused).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from drorch.cli.exits import ExitCode
from drorch.cli.loading import EXIT_CONFIG, config_option, load_or_exit
from drorch.cli.runbook_cmd import _carry_out, _die, _load, _options, _runbook_dirs

MIGRATE = "hurricane-planned-migration.yaml"
FAILOVER = "site-failover.yaml"
FAILBACK = "failback.yaml"
START = "cluster-start.yaml"


def shipped_runbook(name: str) -> Path:
    """The shipped runbook NAME from the runbook folder (`$DRORCH_RUNBOOKS`, ./runbooks,
    or the one beside the installed package)."""
    for folder in _runbook_dirs(None):
        if (folder / name).is_file():
            return folder / name
    _die(f"the shipped runbook {name} is not in {_runbook_dirs(None) or 'any runbooks/'}"
         " (set $DRORCH_RUNBOOKS to the folder that holds it)", EXIT_CONFIG)  # fmt: skip


def _sites(config: Path) -> tuple[list[str], str]:
    """The cluster's site names, and where it runs now (observed; see active_site)."""
    from drorch.cli.loading import cluster_environment
    from drorch.decide.snapshot import active_site
    from drorch.observe import observe

    with cluster_environment(config) as loaded:
        _refuse_unfinished(loaded.env.state_dir, loaded.cluster.name)
        snap = observe(loaded.cluster, loaded.env).snapshot
        site, why = active_site(snap)
    click.echo(f"observed: the cluster runs at {site} ({why})", err=True)
    return [s.name for s in loaded.cluster.sites], site


def _refuse_unfinished(state_dir: Path, cluster: str) -> None:
    """Refuse (exit 3) while a run on `cluster` is in progress or was interrupted: the
    volumes may already be primary at the target half-way through a move, and "nothing to
    do" would hide that. The same refusals `drorch runbook run` gives."""
    from drorch.runbook.journal import RUNNING, Journal, JournalError
    from drorch.runbook.lock import RunLock

    holder = RunLock(state_dir, cluster).holder()
    if holder is not None:
        _die(f"cluster-locked: run {holder or '(unknown)'} is in progress on cluster "
             f"{cluster!r}; wait for it, or see `drorch runbook show {holder or 'RUN_ID'}`",
             ExitCode.REFUSED)  # fmt: skip
    try:
        records = Journal(state_dir).runs(cluster)
    except JournalError as exc:
        _die(str(exc), ExitCode.REFUSED)
    for record in records:
        if record.status == RUNNING and not record.dry_run:
            _die(f"interrupted-run: run {record.run_id} ({record.runbook}) on cluster "
                 f"{cluster!r} was interrupted; `drorch runbook resume {record.run_id}` "
                 f"continues it, `drorch runbook abandon {record.run_id}` gives it up",
                 ExitCode.REFUSED)  # fmt: skip


def _other(sites: list[str], site: str) -> str:
    return next(s for s in sites if s != site)


def _check_site(sites: list[str], site: str, flag: str) -> None:
    if site not in sites:
        _die(f"{flag} {site!r}: no such site (sites: {', '.join(sites)})", EXIT_CONFIG)


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        (
            config_option,
            click.option("--dry-run", is_flag=True, help="Check every step; change nothing."),
            click.option("--yes", is_flag=True, help="Answer every confirmation gate yes."),
            click.option("--force", is_flag=True, help="Relax forceable blockers only."),
            click.option(
                "--accept-data-loss", is_flag=True, help="Allow steps that may lose writes."
            ),
        )
    ):
        func = option(func)
    return func


def _run(name: str, config: Path, params: dict[str, str], flags: dict[str, bool]) -> None:
    if flags["accept_data_loss"] and not flags["force"]:
        _die("--accept-data-loss goes with --force", EXIT_CONFIG)
    path = shipped_runbook(name)
    shown = " ".join(f"--param {k}={v}" for k, v in params.items())
    click.echo(f"running: drorch runbook run {path} -c {config} {shown}", err=True)
    options = _options(flags["dry_run"], flags["yes"], flags["force"],
                       flags["accept_data_loss"], str(config.resolve()))  # fmt: skip
    _carry_out(_load(path), config, options, None, params)


@click.command("migrate")
@click.option("--to", "to", required=True, metavar="SITE", help="The site to move to.")
@_common
def migrate(to: str, config: Path, **flags: bool) -> None:
    """Planned move of everything to SITE (runbooks/hurricane-planned-migration.yaml)."""
    load_or_exit(config)
    sites, now = _sites(config)
    _check_site(sites, to, "--to")
    if now == to:
        click.echo(f"nothing to do: the cluster already runs at {to}")
        return
    _run(MIGRATE, config, {"to": to, "from": now}, flags)


@click.command("failover")
@click.option("--to", "to", required=True, metavar="SITE", help="The surviving site.")
@_common
def failover(to: str, config: Path, **flags: bool) -> None:
    """Unplanned failover to SITE after the other site was lost (runbooks/site-failover.yaml)."""
    cluster = load_or_exit(config)
    sites = [s.name for s in cluster.sites]
    _check_site(sites, to, "--to")
    _run(FAILOVER, config, {"to": to, "lost": _other(sites, to)}, flags)


@click.command("failback")
@click.option(
    "--to", "to", metavar="SITE", help="The site to return to (default: the configured primary)."
)
@_common
def failback(to: str | None, config: Path, **flags: bool) -> None:
    """Return to the original site after a failover: reprotect, resync, migrate back
    (runbooks/failback.yaml)."""
    cluster = load_or_exit(config)
    target = to or cluster.primary_site
    sites, now = _sites(config)
    _check_site(sites, target, "--to")
    if now == target:
        click.echo(f"nothing to do: the cluster already runs at {target}")
        return
    _run(FAILBACK, config, {"to": target, "from": now}, flags)


@click.command("start")
@click.option(
    "--to", "to", metavar="SITE", help="The site to start at (default: the configured primary)."
)
@_common
def start(to: str | None, config: Path, **flags: bool) -> None:
    """Start a cluster that runs nowhere, both sites up (runbooks/cluster-start.yaml)."""
    cluster = load_or_exit(config)
    target = to or cluster.primary_site
    _check_site([s.name for s in cluster.sites], target, "--to")
    _run(START, config, {"to": target}, flags)
