"""`drorch repl up|down -c CONFIG`: start or stop the replicas this machine runs, from the
cluster file (the logic is `drorch.replication.bringup`; this module parses and renders).

Exit codes: 0 done; 1 a pair did not connect, or a primary was not stopped; 2 usage or
config error; 3 refused as unsafe (a day-0 promotion of a copy that holds data).
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import click

from drorch.cli.flags import confirm_or_stop, dry_run_option, yes_option
from drorch.cli.loading import EXIT_CONFIG, config_option, load_or_exit
from drorch.cli.output import format_option, render
from drorch.cli.repl_cmd import EXIT_FAILED, _fail, repl
from drorch.replication.base import ReplicationError

COLUMNS = ("volume", "node", "site", "action", "role", "disk", "connection")


def _finish(result: object, fmt: str) -> None:
    from drorch.replication.bringup import Bringup

    assert isinstance(result, Bringup)
    render([asdict(r) for r in result.rows], fmt, COLUMNS)
    for problem in result.problems:
        click.echo(f"drorch: error: {problem}", err=True)
    if result.problems:
        sys.exit(EXIT_FAILED)


@repl.command("up")
@config_option
@click.option("--volume", "volumes", multiple=True, help="Only this volume (repeatable).")
@click.option("--node", help="Only this node's replicas (default: every local node).")
@click.option(
    "--initial-primary",
    metavar="SITE",
    help="Day 0: make SITE's copy the source of a brand-new pair (refused if either copy"
    " holds data, unless --force --accept-data-loss).",
)
@click.option("--force", is_flag=True, help="With --accept-data-loss: promote anyway.")
@click.option("--accept-data-loss", is_flag=True, help="Acknowledge overwriting the peer.")
@format_option()
def up(
    config: Path,
    volumes: tuple[str, ...],
    node: str | None,
    initial_primary: str | None,
    force: bool,
    accept_data_loss: bool,
    fmt: str,
) -> None:
    """Start this machine's replicas (idempotent) and wait until each pair connects."""
    from drorch.environment import Environment
    from drorch.replication.bringup import replicas_up

    cluster = load_or_exit(config)
    if initial_primary is not None and initial_primary not in {s.name for s in cluster.sites}:
        click.echo(f"drorch: error: no site {initial_primary!r}", err=True)
        sys.exit(EXIT_CONFIG)
    env = Environment(base_dir=config.resolve().parent)
    try:
        result = replicas_up(
            cluster, env, volumes, node, initial_primary,
            accept_data_loss=force and accept_data_loss,
            on_progress=lambda text: click.echo(text, err=True),
        )  # fmt: skip
    except KeyError as exc:
        click.echo(f"drorch: error: {exc.args[0]}", err=True)
        sys.exit(EXIT_CONFIG)
    except ReplicationError as exc:
        _fail(exc, fmt)
    finally:
        env.close()
    _finish(result, fmt)


@repl.command("down")
@config_option
@click.option("--volume", "volumes", multiple=True, help="Only this volume (repeatable).")
@click.option("--node", help="Only this node's replicas (default: every local node).")
@click.option("--demote", is_flag=True, help="Demote a primary first instead of refusing.")
@format_option()
@dry_run_option
@yes_option
def down(
    config: Path,
    volumes: tuple[str, ...],
    node: str | None,
    demote: bool,
    fmt: str,
    dry_run: bool,
    yes: bool,
) -> None:
    """Stop this machine's replicas cleanly (flush, exit). A primary is refused unless
    --demote. Asks first unless --yes; --dry-run says what it would stop."""
    from drorch.environment import Environment
    from drorch.replication.bringup import replicas_down

    cluster = load_or_exit(config)
    env = Environment(base_dir=config.resolve().parent)
    try:
        if dry_run or not yes:
            plan = replicas_down(cluster, env, volumes, node, demote, dry_run=True)
            acting = [f"{r.volume} at {r.node}" for r in plan.rows if r.action.startswith("would")]
            if dry_run:
                _finish(plan, fmt)
                return
            if acting:
                demoting = " (demoting the primaries first)" if demote else ""
                confirm_or_stop(yes, f"Stop {', '.join(acting)}{demoting}?")
        result = replicas_down(cluster, env, volumes, node, demote)
    except KeyError as exc:
        click.echo(f"drorch: error: {exc.args[0]}", err=True)
        sys.exit(EXIT_CONFIG)
    except ReplicationError as exc:
        _fail(exc, fmt)
    finally:
        env.close()
    _finish(result, fmt)
