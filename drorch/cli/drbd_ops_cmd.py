"""`drorch drbd` operation commands: up, down, primary, secondary, connect, disconnect,
adjust, invalidate, resolve and create-md (`OPERATIONS`, added to the `drbd` group by
drbd_cmd; verify and watch, which follow DRBD's events, are in drbd_watch_cmd).

Each observes first and acts only when the decision says so; `--dry-run` prints the
decision and the drbdadm command it would run, after the same checks. Data-losing ones
need --accept-data-loss; whatever stops service, replication or data (down,
secondary, disconnect, primary, invalidate, resolve, create-md, adjust) asks first:
`--yes` does not, and without a terminal it stops (drorch.cli.flags).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from drorch.cli.drbd_common import (
    config_option,
    exit_code,
    fail,
    node_option,
    replicator,
)
from drorch.cli.exits import ExitCode
from drorch.cli.flags import confirm_or_stop, dry_run_option, yes_option
from drorch.replication.base import UnsafeOperation

OPERATIONS: list[click.Command] = []


def operation(name: str) -> Callable[[Callable[..., None]], click.Command]:
    """`@click.command(name)`, collected in OPERATIONS."""

    def register(func: Callable[..., None]) -> click.Command:
        command = click.command(name)(func)
        OPERATIONS.append(command)
        return command

    return register


def show_plan(drv: Any, action: str, **kwargs: bool) -> None:
    """--dry-run: the decision and the command it would run; a refusal ends it as the
    real run would end (exit 1 refused, exit 3 unsafe unless forced)."""
    from drorch.replication.drbd.policy import Verdict

    decision, argv = drv.plan(action, **kwargs)
    click.echo(f"{decision.verdict.value}: {decision.reason}")
    if argv:
        click.echo(f"would run: {' '.join(argv)}")
    if decision.verdict is Verdict.REFUSE:
        fail(f"refused: {decision.reason}", ExitCode.FAILED)
    if decision.verdict is Verdict.UNSAFE:
        fail(f"refused: {decision.reason}", ExitCode.REFUSED)


def ask_if_it_runs(drv: Any, action: str, yes: bool, question: str, **kwargs: bool) -> None:
    """Ask (drorch.cli.flags.confirm_or_stop) only when the action would run: a refusal
    or a no-op is reported by the driver as it would be with --yes, never asked about."""
    from drorch.replication.drbd.policy import Verdict

    decision, _ = drv.plan(action, **kwargs)
    if decision.verdict is Verdict.RUN:
        confirm_or_stop(yes, question)


def _simple(op: str, doc: str, act: Callable[[Any], None], ask: str | None = None) -> None:
    """One operation; `ask`: it stops service or replication, so it asks first (a
    question about `{volume}` on `{node}`) and takes --yes."""

    def command(
        config: Path, node: str | None, volume: str, dry_run: bool, yes: bool = True
    ) -> None:
        with replicator(config, volume, node) as drv:
            if dry_run:
                show_plan(drv, op)
                return
            if ask is not None:
                ask_if_it_runs(drv, op, yes, ask.format(volume=volume, node=drv.node.name))
            act(drv)
            click.echo("; ".join(drv.log) or "done")

    command.__doc__ = doc
    decorated: Callable[..., None] = command
    if ask is not None:
        decorated = yes_option(decorated)
    decorated = dry_run_option(decorated)
    decorated = click.argument("volume")(decorated)
    decorated = node_option(config_option(decorated))
    operation(op)(decorated)


_simple("up", "Attach the disk and start connecting (drbdadm up). Idempotent.", lambda d: d.up())
_simple(
    "down",
    "Disconnect and detach (drbdadm down); refused while Primary.",
    lambda d: d.down(),
    "Take {volume} down on {node} (disconnect and detach: no replication until up)?",
)
_simple(
    "secondary",
    "Become Secondary (drbdadm secondary).",
    lambda d: d.demote(),
    "Demote {volume} on {node} to Secondary (it stops taking writes)?",
)
_simple(
    "connect", "Connect to the peer; fails on split brain (drbdadm connect).", lambda d: d.connect()
)
_simple(
    "disconnect",
    "Go StandAlone on purpose (drbdadm disconnect).",
    lambda d: d.disconnect(),
    "Disconnect {volume} on {node} (StandAlone: writes are no longer replicated)?",
)


@operation("adjust")
@config_option
@node_option
@click.argument("volume")
@dry_run_option
@yes_option
def adjust_cmd(config: Path, node: str | None, volume: str, dry_run: bool, yes: bool) -> None:
    """Apply the resource file to the running resource (drbdadm adjust). --dry-run runs
    `drbdadm -d adjust` on the node and prints the steps it would take."""
    with replicator(config, volume, node) as drv:
        argv, steps = drv.plan_adjust()
        if dry_run:
            click.echo(f"would run: {' '.join(argv)}")
            for step in steps:
                click.echo(f"  {step}")
            return
        confirm_or_stop(yes, f"Apply the resource file of {volume} on {drv.node.name} (adjust)?")
        drv.adjust()
        click.echo("; ".join(drv.log) or "done")


@operation("primary")
@config_option
@node_option
@click.argument("volume")
@click.option("--epoch", type=int, help="Quorum epoch this promotion is based on.")
@click.option("--force", is_flag=True, help="Promote a disk that is not UpToDate.")
@click.option("--accept-data-loss", is_flag=True, help="Acknowledge that --force may lose data.")
@dry_run_option
@yes_option
def primary_cmd(
    config: Path,
    node: str | None,
    volume: str,
    epoch: int | None,
    force: bool,
    accept_data_loss: bool,
    dry_run: bool,
    yes: bool,
) -> None:
    """Become Primary (drbdadm primary); refused while the peer is Primary, the local disk
    is not UpToDate, or (with a witness) the witness marks this copy outdated or this site
    does not hold the lease, unless --force --accept-data-loss. Without --epoch the epoch
    is the witness grant's."""
    from drorch.cli.loading import load_or_exit
    from drorch.replication.witness_check import check_promotion

    with replicator(config, volume, node) as drv:
        if dry_run:
            show_plan(drv, "primary", force=force, accept_data_loss=accept_data_loss)
            check_promotion(  # the witness's word, as the real run asks it (read only)
                load_or_exit(config),
                volume,
                drv.node.name,
                config.resolve().parent,
                force=force,
                accept_data_loss=accept_data_loss,
            )
            return
        check = check_promotion(
            load_or_exit(config),
            volume,
            drv.node.name,
            config.resolve().parent,
            force=force,
            accept_data_loss=accept_data_loss,
        )
        for note in check.notes:
            click.echo(f"warning: forced past: {note}", err=True)
        forced = " FORCED, past the refusals above" if check.notes else ""
        ask_if_it_runs(
            drv,
            "primary",
            yes,
            f"Promote {volume} on {drv.node.name} to Primary{forced}?",
            force=force,
            accept_data_loss=accept_data_loss,
        )
        drv.promote(
            check.epoch if epoch is None else epoch,
            force=force,
            accept_data_loss=accept_data_loss,
        )
        click.echo("; ".join(drv.log))
        if check.overrode_record:
            from drorch.replication.witness_check import claim_after_forced_promotion

            claim = claim_after_forced_promotion(
                load_or_exit(config), volume, drv.node.name, config.resolve().parent
            )
            click.echo(f"note: {claim}", err=True)


def _data_loss(flag: bool, what: str) -> None:
    if not flag:
        fail(
            f"refused: {what} discards data on this node; repeat with --accept-data-loss",
            ExitCode.REFUSED,
        )


@operation("invalidate")
@config_option
@node_option
@click.argument("volume")
@click.option("--accept-data-loss", is_flag=True, help="Acknowledge losing this node's data.")
@dry_run_option
@yes_option
def invalidate_cmd(
    config: Path, node: str | None, volume: str, accept_data_loss: bool, dry_run: bool, yes: bool
) -> None:
    """Discard this node's data: connected, resync it all from the peer; StandAlone after a
    split brain, throw away this node's changes and resync from the peer (the victim)."""
    if dry_run:
        with replicator(config, volume, node) as drv:
            show_plan(drv, "invalidate")
            _data_loss(accept_data_loss, "invalidate")  # refused as the real run is
        return
    _data_loss(accept_data_loss, "invalidate")
    with replicator(config, volume, node) as drv:
        ask_if_it_runs(drv, "invalidate", yes, f"Discard {volume}'s data on {drv.node.name}?")
        drv.invalidate()
        click.echo("; ".join(drv.log))


@operation("resolve")
@config_option
@node_option
@click.argument("volume")
@click.option("--discard-local", is_flag=True, required=True, help="This node is the victim.")
@click.option("--accept-data-loss", is_flag=True, help="Acknowledge losing this node's changes.")
@dry_run_option
@yes_option
def resolve_cmd(
    config: Path,
    node: str | None,
    volume: str,
    discard_local: bool,
    accept_data_loss: bool,
    dry_run: bool,
    yes: bool,
) -> None:
    """Resolve a split brain: throw away this node's changes and resync from the peer."""
    if dry_run:
        with replicator(config, volume, node) as drv:
            show_plan(drv, "resolve")
            _data_loss(accept_data_loss, "resolve --discard-local")
        return
    _data_loss(accept_data_loss, "resolve --discard-local")
    with replicator(config, volume, node) as drv:
        ask_if_it_runs(
            drv, "resolve", yes, f"Discard {volume}'s split-brain changes on {drv.node.name}?"
        )
        drv.resolve_discard_local()
        click.echo("; ".join(drv.log))


@operation("create-md")
@config_option
@node_option
@click.argument("volume")
@click.option("--force", is_flag=True, help="Override the refusal to overwrite existing metadata.")
@click.option("--accept-data-loss", is_flag=True, help="Acknowledge that --force loses data.")
@dry_run_option
@yes_option
def create_md_cmd(
    config: Path,
    node: str | None,
    volume: str,
    force: bool,
    accept_data_loss: bool,
    dry_run: bool,
    yes: bool,
) -> None:
    """Write DRBD metadata on the backing disk; existing metadata is kept (refused, exit
    3) unless --force --accept-data-loss."""
    with replicator(config, volume, node) as drv:
        try:
            argv = drv.plan_create_md(force=force, accept_data_loss=accept_data_loss)
        except UnsafeOperation as exc:
            fail(f"refused: {exc}", exit_code(exc))
        if dry_run:
            keep = "" if force else " (refused by drbdmeta if metadata exists: it is kept)"
            click.echo(f"would run: {' '.join(argv)}{keep}")
            return
        what = "Overwrite the DRBD metadata" if force else "Write DRBD metadata"
        confirm_or_stop(
            yes,
            f"{what} of {volume} on {drv.node.name} ({drv.volume.paths.get(drv.node.name, '?')})?",
        )
        drv.create_md(force=force, accept_data_loss=accept_data_loss)
        click.echo("; ".join(drv.log))
