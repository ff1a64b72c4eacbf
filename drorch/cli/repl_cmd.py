"""`drorch repl`: the low-level pyrepl commands (serve, status, promote, demote, connect,
disconnect, verify, resolve). Each parses, asks the daemon over its control socket,
and renders through the one output helper.

Exit codes: 0 done; 1 failed (daemon unreachable, refused); 3 unsafe operation refused
(promote of a disk that is not UpToDate); 4 split brain; 5 stale fencing epoch;
verify exits 1 when any region is out of sync.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

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
]


def _fail(exc: ReplicationError, fmt: str = "table") -> NoReturn:
    """Message on stderr; with --format json|yaml also the error object on stdout, so a
    caller reading JSON (the driver, over SSH) gets the type and split-brain ids."""
    from drorch.replication.pyrepl.control import error_body

    if fmt in ("json", "yaml"):
        render({"error": error_body(exc)}, fmt)
    click.echo(f"error: {exc}", err=True)
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


def _address(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    from drorch.replication.pyrepl.daemon import parse_address

    if value is None:
        return None
    try:
        return parse_address(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    from drorch.model.units import UnitError, parse_size

    if value is None:
        return None
    try:
        return parse_size(value)
    except UnitError as exc:
        raise click.BadParameter(str(exc)) from exc


@repl.command()
@click.option("--name", required=True, help="Volume name (also the NBD export name).")
@click.option(
    "--backing",
    required=True,
    type=click.Path(path_type=Path),
    help="Backing file (created or extended to SIZE) or block device.",
)
@click.option("--size", required=True, callback=_size, help="Volume size, e.g. 1GiB.")
@click.option("--role", required=True, type=click.Choice(["primary", "secondary"]))
@click.option("--mode", required=True, type=click.Choice(["sync", "async"]))
@click.option("--listen", required=True, callback=_address, help="Replication HOST:PORT.")
@click.option("--peer", callback=_address, help="The peer's replication HOST:PORT (dialled).")
@click.option("--nbd", callback=_address, help="Serve the NBD export on HOST:PORT.")
@click.option("--nbd-unix", type=click.Path(path_type=Path), help="Also serve NBD here.")
@control_option
@click.option("--meta", type=click.Path(path_type=Path), help="Metadata sidecar path.")
@click.option("--region-size", default="64KiB", callback=_size, show_default=True)
@click.option(
    "--max-lag",
    default="64MiB",
    callback=_size,
    show_default=True,
    help="async: bound of the send queue (max_lag_bytes).",
)
@click.option(
    "--on-congestion",
    type=click.Choice(["block", "pull-ahead"]),
    default="block",
    show_default=True,
    help="async: what a full send queue does.",
)
@click.option(
    "--resync-rate",
    default="0",
    callback=_size,
    show_default=True,
    help="Cap a resync at this many bytes per second, e.g. 100MiB (0: no cap).",
)
@click.option(
    "--al-extents",
    type=click.IntRange(16, 65534),
    default=1237,
    show_default=True,
    help="Activity log slots of 4 MiB (DRBD's al-extents): resynced after a crash.",
)
@click.option("--tls-cert", type=click.Path(exists=True, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--peer-cert",
    type=click.Path(exists=True, path_type=Path),
    help="TLS: the peer's certificate, pinned (with --tls-cert/--tls-key).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
def serve(**opts: Any) -> None:
    """Run one volume's replicator in the foreground until SIGTERM (then flush, exit 0)."""
    from drorch.replication.base import Role
    from drorch.replication.pyrepl.daemon import ServeOptions
    from drorch.replication.pyrepl.daemon import serve as run
    from drorch.replication.pyrepl.engine import EngineConfig
    from drorch.replication.pyrepl.tls import link_tls

    logging.basicConfig(
        level=logging.DEBUG if opts["verbose"] else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        tls = link_tls(opts["tls_cert"], opts["tls_key"], opts["peer_cert"])
        config = EngineConfig(
            name=opts["name"],
            backing=opts["backing"],
            size=opts["size"],
            mode=opts["mode"],
            role=Role(opts["role"]),
            meta_path=opts["meta"],
            region_size=opts["region_size"],
            max_lag_bytes=opts["max_lag"],
            on_congestion=opts["on_congestion"],
            resync_rate=opts["resync_rate"],
            al_extents=opts["al_extents"],
        )
        options = ServeOptions(
            engine=config,
            control=opts["control"],
            listen=opts["listen"],
            peer=opts["peer"],
            nbd=opts["nbd"],
            nbd_unix=opts["nbd_unix"],
            tls=tls,
        )
        from drorch.replication.pyrepl.serve_checks import serve_problems

        problems = serve_problems(options)
        if problems:
            for problem in problems:
                click.echo(f"drorch: error: {problem}", err=True)
            sys.exit(2)
        sys.exit(run(options))
    except ReplicationError as exc:
        _fail(exc)
    except (OSError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)


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
    render(rows, fmt, None if fmt != "table" else STATUS_COLUMNS)


def _role_options(f: Any) -> Any:
    f = click.option(
        "--accept-data-loss", is_flag=True, help="Acknowledge that forcing may lose data."
    )(f)
    f = click.option("--force", is_flag=True, help="Override a data-safety refusal.")(f)
    f = click.option("--epoch", type=click.IntRange(min=0), help="Quorum fencing epoch.")(f)
    return control_option(format_option()(f))


def _unused(op: str, epoch: int | None, force: bool, accept_data_loss: bool) -> None:
    if epoch is not None or force or accept_data_loss:
        click.echo(f"note: --epoch/--force/--accept-data-loss have no effect on {op}", err=True)


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
def promote(
    control: Path,
    fmt: str,
    epoch: int | None,
    force: bool,
    accept_data_loss: bool,
    config: Path | None,
    node: str | None,
) -> None:
    """Become primary at fencing EPOCH; refuses a disk that is not UpToDate unless forced.

    With -c CONFIG --node NODE and a witness in it: also refuses when the witness marks
    this copy outdated or this site does not hold the lease, and takes the epoch from the
    witness's grant."""
    if force != accept_data_loss:
        raise click.UsageError("--force needs --accept-data-loss (and the other way round)")
    if (config is None) != (node is None):
        raise click.UsageError("-c CONFIG and --node go together")
    claim = None
    if config is not None and node is not None:
        epoch, claim = _witness_epoch(control, config, node, epoch, force, fmt)
    render(
        _call(control, "promote", fmt, epoch=epoch, force=force, accept_data_loss=accept_data_loss),
        fmt,
    )
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
@_role_options
def demote(control: Path, fmt: str, epoch: int | None, force: bool, accept_data_loss: bool) -> None:
    """Become secondary (the NBD export turns read-only)."""
    _unused("demote", epoch, force, accept_data_loss)
    render(_call(control, "demote", fmt), fmt)


@repl.command()
@_role_options
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Follow a resync to its end with a progress bar.",
)
def connect(
    control: Path, fmt: str, epoch: int | None, force: bool, accept_data_loss: bool, wait: bool
) -> None:
    """Connect to the peer; resync if needed. Split brain exits 4 and stays StandAlone."""
    _unused("connect", epoch, force, accept_data_loss)
    before = int(_call(control, "status", fmt).get("out_of_sync_bytes") or 0) if wait else 0
    result = _call(control, "connect", fmt)
    render(_wait_for_resync(control, result, before) if wait else result, fmt)


@repl.command()
@_role_options
def disconnect(
    control: Path, fmt: str, epoch: int | None, force: bool, accept_data_loss: bool
) -> None:
    """Go StandAlone on purpose (the primary keeps a dirty bitmap meanwhile)."""
    _unused("disconnect", epoch, force, accept_data_loss)
    render(_call(control, "disconnect", fmt), fmt)


@repl.command()
@_role_options
def verify(control: Path, fmt: str, epoch: int | None, force: bool, accept_data_loss: bool) -> None:
    """Compare region checksums with the peer; exit 1 if any region differs."""
    _unused("verify", epoch, force, accept_data_loss)
    result = _call(control, "verify", fmt)
    render(result, fmt)
    if result["out_of_sync"]:
        sys.exit(EXIT_FAILED)


@repl.command()
@control_option
@format_option()
def stop(control: Path, fmt: str) -> None:
    """Stop a secondary's daemon cleanly (flush, exit 0). Refused while primary."""
    render(_call(control, "shutdown", fmt), fmt)


# `resolve` (the per-daemon form and the by-site form) lives in its own module; importing
# it registers it on the group.
from drorch.cli import repl_fence_cmd, repl_resolve_cmd  # noqa: E402, F401
