"""`drorch repl serve`: run one volume's replicator in the foreground (option parsing and
the start-up checks' messages; the daemon is `drorch.replication.pyrepl.daemon`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from drorch.cli.exits import error_line
from drorch.cli.flags import byte_size, duration
from drorch.cli.repl_cmd import EXIT_FAILED, _fail, control_option, repl
from drorch.cli.repl_mode_cmd import engine_options, mode_only_options, mode_option_problems
from drorch.replication.base import ReplicationError


def _address(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    from drorch.replication.pyrepl.daemon import parse_address

    if value is None:
        return None
    try:
        return parse_address(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@repl.command()
@click.option("--name", required=True, help="Volume name (also the NBD export name).")
@click.option(
    "--backing",
    required=True,
    type=click.Path(path_type=Path),
    help="Backing file (created or extended to SIZE) or block device.",
)
@click.option("--size", required=True, callback=byte_size, help="Volume size, e.g. 1GiB.")
@click.option("--role", required=True, type=click.Choice(["primary", "secondary"]))
@click.option("--mode", required=True, type=click.Choice(["sync", "async"]))
@click.option("--listen", required=True, callback=_address, help="Replication HOST:PORT.")
@click.option("--peer", callback=_address, help="The peer's replication HOST:PORT (dialled).")
@click.option("--nbd", callback=_address, help="Serve the NBD export on HOST:PORT.")
@click.option("--nbd-unix", type=click.Path(path_type=Path), help="Also serve NBD here.")
@click.option(
    "--nbd-payload-timeout",
    default="30s",
    callback=duration,
    show_default=True,
    help="Drop an NBD client that stalls this long in the middle of a request.",
)
@click.option(
    "--nbd-idle-evict",
    default="60s",
    callback=duration,
    show_default=True,
    help="When every NBD slot is held, a client idle this long (nothing in flight) makes"
    " room for a new one; never closed for being idle otherwise.",
)
@control_option
@click.option("--meta", type=click.Path(path_type=Path), help="Metadata sidecar path.")
@click.option("--region-size", default="64KiB", callback=byte_size, show_default=True)
@mode_only_options
@click.option(
    "--resync-rate",
    default="0",
    callback=byte_size,
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
@click.option(
    "--peer-timeout",
    default="6s",
    callback=duration,
    show_default=True,
    help="A peer silent this long (it pings every second) counts as lost.",
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
    from drorch.replication.pyrepl.engine_config import EngineConfig
    from drorch.replication.pyrepl.tls import link_tls

    logging.basicConfig(
        level=logging.DEBUG if opts["verbose"] else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    problems = mode_option_problems(opts["mode"], opts)
    if problems:  # an option that would do nothing here is a mistake, not a no-op
        for problem in problems:
            click.echo(error_line(problem), err=True)
        sys.exit(2)
    given = {k: v for k, v in engine_options(opts).items() if v is not None}
    if opts["mode"] == "async":
        given.setdefault("fencing", "dont-care")  # an async primary acknowledges alone
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
            resync_rate=opts["resync_rate"],
            al_extents=opts["al_extents"],
            peer_timeout=opts["peer_timeout"],
            **given,
        )
        options = ServeOptions(
            engine=config,
            control=opts["control"],
            listen=opts["listen"],
            peer=opts["peer"],
            nbd=opts["nbd"],
            nbd_unix=opts["nbd_unix"],
            tls=tls,
            nbd_payload_timeout=opts["nbd_payload_timeout"],
            nbd_idle_evict=opts["nbd_idle_evict"],
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
        click.echo(error_line(str(exc)), err=True)
        sys.exit(EXIT_FAILED)
