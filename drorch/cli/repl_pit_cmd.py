"""`drorch repl pit-take|pit-drop|pit-list`: point-in-time views of a replica, read-only
NBD exports `VOLUME@LABEL` frozen when taken while replication keeps writing the replica
(drorch.replication.pyrepl.pointintime). The test-recovery drill boots its copies from
them."""

from __future__ import annotations

from pathlib import Path

import click

from drorch.cli.output import format_option, render
from drorch.cli.repl_cmd import _call, control_option, repl

LABEL_HELP = "The view's name (1-64 of A-Z a-z 0-9 _ . -): its export is VOLUME@LABEL."


@repl.command("pit-take")
@control_option
@click.option("--label", required=True, help=LABEL_HELP)
@click.option(
    "--store",
    type=click.Path(path_type=Path),
    help="Where the view keeps overwritten chunks (default: BACKING.pit-LABEL).",
)
@format_option()
def pit_take(control: Path, label: str, store: Path | None, fmt: str) -> None:
    """Freeze a read-only view of the replica as it is now; replication goes on.
    Prints its export and NBD URI. Taking a label again returns the same view."""
    args = {"label": label, **({"store": str(store)} if store else {})}
    render(_call(control, "pit_take", fmt, **args), fmt)


@repl.command("pit-drop")
@control_option
@click.option("--label", required=True, help=LABEL_HELP)
@format_option()
def pit_drop(control: Path, label: str, fmt: str) -> None:
    """Remove a view and its store (nothing to do when there is none)."""
    render(_call(control, "pit_drop", fmt, label=label), fmt)


@repl.command("pit-list")
@control_option
@format_option()
def pit_list(control: Path, fmt: str) -> None:
    """The daemon's point-in-time views: export, store, when taken, bytes kept."""
    views = _call(control, "pit_list", fmt)["views"]
    render(views, fmt)
