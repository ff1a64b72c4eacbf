"""`drorch repl`: the low-level pyrepl commands (serve, status, promote, demote, connect,
disconnect, verify, resolve). Each parses, asks the daemon over its control socket,
and renders through the one output helper.

Exit codes: 0 done; 1 failed (daemon unreachable, refused); 3 unsafe operation refused
(promote of a disk that is not UpToDate); 4 split brain; 5 stale fencing epoch;
verify exits 1 when any region is out of sync.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from drorch.cli.exits import error_line
from drorch.cli.flags import check_force, confirm_or_stop, dry_run_option, yes_option
from drorch.cli.output import format_option, render
from drorch.model.states import is_syncing
from drorch.replication.base import ReplicationError, SplitBrain, StaleEpoch, UnsafeOperation

EXIT_FAILED, EXIT_UNSAFE, EXIT_SPLIT_BRAIN, EXIT_STALE_EPOCH = 1, 3, 4, 5
STATUS_COLUMNS = [
    "name",
    "role",
    "disk",
    "connection",
    "mode",
    "out_of_sync_bytes",
    "lag_bytes",
    "epoch",
    "nbd",
    "outdated_since",
]


def _fail(exc: ReplicationError, fmt: str = "table") -> NoReturn:
    """Message on stderr; with --format json|yaml also the error object on stdout, so a
    caller reading JSON (the driver, over SSH) gets the type and split-brain ids."""
    from drorch.replication.pyrepl.control import error_body

    if fmt in ("json", "yaml"):
        render({"error": error_body(exc)}, fmt)
    click.echo(error_line(str(exc)), err=True)
    if isinstance(exc, SplitBrain):
        click.echo(f"  local generation: {exc.local}", err=True)
        click.echo(f"  peer generation:  {exc.peer}", err=True)
        sys.exit(EXIT_SPLIT_BRAIN)
    if isinstance(exc, UnsafeOperation):
        sys.exit(EXIT_UNSAFE)
    if isinstance(exc, StaleEpoch):
        sys.exit(EXIT_STALE_EPOCH)
    sys.exit(EXIT_FAILED)


def _call(control: Path, op: str, fmt: str = "table", **args: Any) -> Any:
    from drorch.replication.pyrepl.control import ControlClient

    try:
        return ControlClient(control).call(op, **args)
    except ReplicationError as exc:
        _fail(exc, fmt)


control_option = click.option(
    "--control",
    type=click.Path(path_type=Path),
    required=True,
    help="The daemon's control socket (as given to `repl serve --control`).",
)


@click.group()
def repl() -> None:
    """pyrepl: drorch's own block replicator (sync/async) with an NBD export."""


@repl.command()
@click.option("--control", type=click.Path(path_type=Path), help="One daemon's control socket.")
@click.option(
    "-c",
    "--config",
    "config",
    type=click.Path(path_type=Path),
    help="Cluster config: report every volume on --node, whatever its driver.",
)
@click.option("--node", help="Node name (with -c).")
@format_option()
def status(control: Path | None, config: Path | None, node: str | None, fmt: str) -> None:
    """Show replication state: role, disk, connection, out-of-sync and lag bytes, epoch."""
    if control is not None and config is None:
        render(_call(control, "status", fmt), fmt)
        return
    if config is None or node is None or control is not None:
        raise click.UsageError("give either --control SOCKET, or -c CONFIG --node NODE")
    from drorch.model.reports import ConfigError
    from drorch.replication.node_status import UnknownNode, volume_statuses

    try:
        rows = volume_statuses(config, node)
    except ConfigError as exc:  # every problem with FILE:LINE:COL, exit 2
        for report in exc.reports:
            click.echo(str(report), err=True)
        sys.exit(2)
    except UnknownNode as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--node") from None
    except ReplicationError as exc:
        _fail(exc)
    for row in rows:  # since when a copy is known stale: here, or the peer's (pyrepl)
        extra = row.get("extra") or {}
        here, peer = extra.get("outdated_since"), extra.get("peer_outdated_since")
        row["outdated_since"] = f"here {here}" if here else (f"peer {peer}" if peer else None)
    render(rows, fmt, None if fmt != "table" else STATUS_COLUMNS)


def _role_options(f: Any) -> Any:
    f = click.option(
        "--accept-data-loss", is_flag=True, help="Acknowledge that forcing may lose data."
    )(f)
    f = click.option("--force", is_flag=True, help="Override a data-safety refusal.")(f)
    f = click.option("--epoch", type=click.IntRange(min=0), help="Quorum fencing epoch.")(f)
    return control_option(format_option()(f))


def _daemon_options(f: Any) -> Any:
    """--control and --format: all an operation without a fencing epoch or a data-safety
    override takes (options that would have no effect are not offered)."""
    return control_option(format_option()(f))


def _destructive_options(f: Any) -> Any:
    return dry_run_option(yes_option(f))


def _confirm(control: Path, op: str, fmt: str, yes: bool, args: dict[str, Any]) -> None:
    """Show what `op` would do (its dry run, the same refusals) and ask, unless --yes
    (no answer, no terminal: exit 1, nothing done)."""
    if yes:
        return
    plan = _call(control, op, fmt, dry_run=True, **args)
    confirm_or_stop(yes, f"{plan.get('message', plan)}: go ahead?")


def _wait_for_resync(control: Path, result: dict[str, Any], out_of_sync: int = 0) -> dict[str, Any]:
    """connect/resolve: follow a resync with a progress bar. `out_of_sync` is what was
    out of sync before: then the bar is drawn even when the resync ended before the first
    poll (a small one does), so a resync that happened is always shown."""
    from drorch.cli.progress import ProgressBar
    from drorch.clock import SystemClock
    from drorch.wait import wait_until

    if not is_syncing(str(result.get("connection"))) and not out_of_sync:
        return result
    clock = SystemClock()
    bar: ProgressBar | None = None
    last: dict[str, Any] = {}

    def resynced() -> bool:
        nonlocal bar
        st = last["st"] = _call(control, "status")
        resync = (st.get("extra") or {}).get("resync") or {}
        total = int(resync.get("total_bytes") or out_of_sync or 1)
        bar = bar or ProgressBar(f"resync {st['name']}", total)
        if not is_syncing(st["connection"]):
            return True
        eta = resync.get("eta_seconds")
        detail = f"{resync.get('done_bytes', 0)}/{resync.get('total_bytes', 0)} B"
        bar.update(
            int(resync.get("done_bytes") or 0),
            detail + (f", ETA {eta:.0f}s" if eta is not None else ""),
        )
        return False

    if not wait_until(clock, resynced, clock.monotonic() + 24 * 3600.0, interval=0.5):
        return result
    st = last["st"]
    if bar is not None:
        sent = f", {out_of_sync} B were out of sync" if out_of_sync else ""
        bar.finish(f"{st['connection']}, disk {st['disk']}{sent}")
    return {**result, "connection": st["connection"], "disk": st["disk"]}


@repl.command()
@_role_options
@click.option(
    "-c", "--config", "config", type=click.Path(path_type=Path),
    help="Cluster file: ask its witness first (with --node).",
)  # fmt: skip
@click.option("--node", help="This node's name in the cluster file (with -c).")
@_destructive_options
def promote(
    control: Path,
    fmt: str,
    epoch: int | None,
    force: bool,
    accept_data_loss: bool,
    config: Path | None,
    node: str | None,
    dry_run: bool,
    yes: bool,
) -> None:
    """Become primary at fencing EPOCH; refuses a disk that is not UpToDate unless forced.

    With -c CONFIG --node NODE and a witness in it: also refuses when the witness marks
    this copy outdated or this site does not hold the lease, and takes the epoch from the
    witness's grant. --dry-run: the same refusals, and what it would do; no change."""
    check_force(force, accept_data_loss)
    if (config is None) != (node is None):
        raise click.UsageError("-c CONFIG and --node go together")
    claim = None
    if config is not None and node is not None:
        epoch, claim = _witness_epoch(control, config, node, epoch, force, fmt)
    args = {"epoch": epoch, "force": force, "accept_data_loss": accept_data_loss}
    if dry_run:
        render(_call(control, "promote", fmt, dry_run=True, **args), fmt)
        return
    _confirm(control, "promote", fmt, yes, args)
    render(_call(control, "promote", fmt, **args), fmt)
    if claim is not None:
        click.echo(f"note: {claim()}", err=True)


def _witness_epoch(
    control: Path, config: Path, node: str, epoch: int | None, force: bool, fmt: str
) -> tuple[int | None, Callable[[], str] | None]:
    """The epoch to promote with, and (forced past the witness's record) what to run
    after the promotion: record this site's copy as the current one."""
    from drorch.cli.loading import load_or_exit
    from drorch.replication.witness_check import check_promotion, claim_after_forced_promotion

    cluster = load_or_exit(config)
    try:
        cluster.node(node)
    except KeyError:
        raise click.UsageError(f"{node}: no such node in {cluster.name}") from None
    volume = str(_call(control, "status", fmt)["name"])
    try:
        check = check_promotion(
            cluster,
            volume,
            node,
            config.resolve().parent,
            force=force,
            accept_data_loss=force,
        )
    except ReplicationError as exc:
        _fail(exc, fmt)
    for note in check.notes:
        click.echo(f"warning: forced past: {note}", err=True)
    base = config.resolve().parent
    claim = (
        (lambda: claim_after_forced_promotion(cluster, volume, node, base))
        if check.overrode_record
        else None
    )
    return (check.epoch if epoch is None else epoch), claim


@repl.command()
@_daemon_options
@_destructive_options
def demote(control: Path, fmt: str, dry_run: bool, yes: bool) -> None:
    """Become secondary (the NBD export turns read-only; held frozen writes get EIO)."""
    if dry_run:
        render(_call(control, "demote", fmt, dry_run=True), fmt)
        return
    _confirm(control, "demote", fmt, yes, {})
    render(_call(control, "demote", fmt), fmt)


@repl.command()
@_daemon_options
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Follow a resync to its end with a progress bar.",
)
def connect(control: Path, fmt: str, wait: bool) -> None:
    """Connect to the peer; resync if needed. Split brain exits 4 and stays StandAlone."""
    before = int(_call(control, "status", fmt).get("out_of_sync_bytes") or 0) if wait else 0
    result = _call(control, "connect", fmt)
    render(_wait_for_resync(control, result, before) if wait else result, fmt)


def _checked(control: Path, op: str, fmt: str, dry_run: bool, yes: bool, **args: Any) -> bool:
    """--dry-run: print the daemon's `would_OP` (the same refusals; nothing changes) and
    return False. Else ask with it unless --yes, and return True: go ahead."""
    if dry_run:
        render(_call(control, f"would_{op}", fmt, **args), fmt)
        return False
    if not yes:
        plan = _call(control, f"would_{op}", fmt, **args)
        confirm_or_stop(yes, f"{plan.get('message', plan)}: go ahead?")
    return True


@repl.command()
@_daemon_options
@_destructive_options
def disconnect(control: Path, fmt: str, dry_run: bool, yes: bool) -> None:
    """Go StandAlone on purpose (the primary keeps a dirty bitmap meanwhile)."""
    if _checked(control, "disconnect", fmt, dry_run, yes):
        render(_call(control, "disconnect", fmt), fmt)


@repl.command()
@_daemon_options
def verify(control: Path, fmt: str) -> None:
    """Compare region checksums with the peer; exit 1 if any region differs."""
    result = _call(control, "verify", fmt)
    render(result, fmt)
    if result["out_of_sync"]:
        sys.exit(EXIT_FAILED)


@repl.command()
@control_option
@format_option()
@_destructive_options
def stop(control: Path, fmt: str, dry_run: bool, yes: bool) -> None:
    """Stop a secondary's daemon cleanly (flush, exit 0). Refused while primary."""
    if _checked(control, "shutdown", fmt, dry_run, yes):
        render(_call(control, "shutdown", fmt), fmt)


# `resolve` (the per-daemon form and the by-site form) lives in its own module; importing
# it registers it on the group.
from drorch.cli import (  # noqa: E402, F401
    repl_dual_cmd,
    repl_fence_cmd,
    repl_mode_cmd,
    repl_pit_cmd,
    repl_resolve_cmd,
    repl_serve_cmd,
    repl_up_cmd,
)
