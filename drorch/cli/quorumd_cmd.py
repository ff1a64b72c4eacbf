"""`drorch quorumd --config FILE [--init]`: the quorum witness daemon, in the foreground."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click


@click.command("quorumd")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path),  # the loader refuses all but a regular file
    help="The daemon's YAML config.",
)
@click.option(
    "--init",
    is_flag=True,
    help="Create a fresh state (refused if one exists), then serve. Only for the first start.",
)
@click.option(
    "--recover-epoch",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="With --init, only for a witness whose state was LOST: start every cluster at "
    "epoch N (higher than any epoch a replica has seen) and hold back grants for lease + "
    "switch delay, as after a restart.",
)
@click.option("--verbose", "-v", is_flag=True, help="Also log every connection (debug).")
def quorumd(config_path: Path, init: bool, recover_epoch: int | None, verbose: bool) -> None:
    """Run the quorum witness: logs to stderr, persists and exits 0 on SIGTERM.

    Exit codes: 0 stopped cleanly, 1 state/listen/persist failure, 2 config error."""
    from drorch.quorum.daemon import run

    if recover_epoch is not None and not init:
        raise click.UsageError("--recover-epoch rebuilds a lost state: it needs --init")

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s quorumd %(levelname)s %(message)s",
    )
    sys.exit(run(config_path, init, recover_epoch=recover_epoch))
