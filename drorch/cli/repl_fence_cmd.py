"""`drorch repl fence-peer`: the fence-peer hook of a pyrepl sync primary.

A sync primary with `fencing: resource-only` that loses its peer freezes (acknowledges
nothing) and runs its `--fence-peer-cmd`, which drorch sets to

    drorch repl fence-peer -c CONFIG --volume V --node N

This asks the witness, as N's site, to record durably that only this site's copy of V is
current (`drorch.quorum.fence.record_outdate`). Exit codes:

- 0: the record is on the witness's disk: the primary may resume (peer Outdated);
- 1: the witness cannot be asked (unreachable, no witness or client cert configured);
- 3: the witness would not record it: this site does not hold the quorum lease;
- 5: the peer's site holds the lease: this primary is stale (it acknowledges nothing more;
  DRBD's handler answers 6, "peer is primary", for the same);
- 2: usage or config errors (unknown volume or node).

Any other exit keeps the primary frozen; it retries. `drorch repl outdate-peer --control
SOCKET --accept-data-loss` is the operator's override.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from drorch.cli.flags import dry_run_option, duration, yes_option
from drorch.cli.loading import EXIT_CONFIG, load_or_exit
from drorch.cli.output import format_option, render
from drorch.cli.repl_cmd import EXIT_FAILED, EXIT_STALE_EPOCH, EXIT_UNSAFE, _call, _checked, repl

EXIT_RECORDED = 0


@repl.command("fence-peer")
@click.option(
    "-c", "--config", "config", type=click.Path(path_type=Path), required=True,
    help="The cluster file (its witness: address, pinned fingerprint, this site's cert).",
)  # fmt: skip
@click.option("--volume", required=True, help="The volume whose peer is lost.")
@click.option("--node", required=True, help="This node (the frozen primary).")
@click.option(
    "--timeout", default="5s", callback=duration, show_default=True, help="Witness deadline."
)
def fence_peer(config: Path, volume: str, node: str, timeout: float) -> None:
    """Ask the witness to record the peer outdated; exit 0 only once it is durable."""
    from drorch.quorum.client import QuorumError
    from drorch.quorum.fence import WitnessSetupError, record_outdate

    cluster = load_or_exit(config)
    if volume not in {v.name for v in cluster.volumes}:
        click.echo(f"drorch: error: {volume}: no such volume in {cluster.name}", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        site = cluster.node(node)[0].name
    except KeyError:
        click.echo(f"drorch: error: {node}: no such node in {cluster.name}", err=True)
        sys.exit(EXIT_CONFIG)
    where = f"fence-peer {volume} at {node} (site {site})"
    if cluster.witness is None:
        click.echo(
            f"drorch: error: {where}: no witness is configured, nothing can record the "
            "outdate; the primary stays frozen (`drorch repl outdate-peer "
            "--accept-data-loss` overrides)",
            err=True,
        )
        sys.exit(EXIT_FAILED)
    try:
        answer = record_outdate(
            cluster.witness,
            cluster.name,
            site,
            node,
            volume,
            config.resolve().parent,
            timeout=timeout,
        )
    except (QuorumError, WitnessSetupError, OSError) as exc:
        click.echo(f"drorch: error: {where}: cannot ask the witness: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    vote = answer.vote
    if answer.recorded is None:
        why = answer.refused or (
            f"site {site} does not hold the quorum lease (holder: {vote.holder or 'none'}, "
            f"epoch {vote.epoch})"
        )
        click.echo(f"drorch: error: {where}: the witness recorded nothing: {why}", err=True)
        peer_holds = answer.refused is None and vote.holder not in (None, "", site)
        sys.exit(EXIT_STALE_EPOCH if peer_holds else EXIT_UNSAFE)
    click.echo(
        f"{where}: the witness recorded durably that only site {site}'s copy of {volume} "
        f"is current since epoch {answer.recorded} (record {answer.serial}): the peer is "
        "Outdated"
    )
    sys.exit(EXIT_RECORDED)


@repl.command("unfence-peer")
@click.option(
    "-c", "--config", "config", type=click.Path(path_type=Path), required=True,
    help="The cluster file (its witness: address, pinned fingerprint, this site's cert).",
)  # fmt: skip
@click.option("--volume", required=True, help="The volume whose peer is UpToDate again.")
@click.option("--node", required=True, help="This node (the primary).")
@click.option(
    "--timeout", default="5s", callback=duration, show_default=True, help="Witness deadline."
)
@click.option(
    "--record",
    "serial",
    type=click.IntRange(min=0),
    envvar="DRORCH_OUTDATE_RECORD",
    help="Clear only this write of the record (the serial fence-peer printed; the daemon "
    "passes it in DRORCH_OUTDATE_RECORD). A record written again since stands.",
)
def unfence_peer(config: Path, volume: str, node: str, timeout: float, serial: int | None) -> None:
    """The peer resynced and is UpToDate: clear the witness's outdate record (`current`).
    Exit 0 cleared (or, with --record, left standing because a newer outdate re-wrote
    it); 3 this site does not hold the lease; 1 the witness cannot be asked."""
    from drorch.quorum.client import NotHolder, QuorumError, RecordChanged
    from drorch.quorum.fence import WitnessSetupError, record_current

    cluster = load_or_exit(config)
    if volume not in {v.name for v in cluster.volumes}:
        click.echo(f"drorch: error: {volume}: no such volume in {cluster.name}", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        site = cluster.node(node)[0].name
    except KeyError:
        click.echo(f"drorch: error: {node}: no such node in {cluster.name}", err=True)
        sys.exit(EXIT_CONFIG)
    if cluster.witness is None:
        click.echo("drorch: error: no witness is configured: there is no record", err=True)
        sys.exit(EXIT_FAILED)
    try:
        epoch = record_current(
            cluster.witness, cluster.name, site, node, volume, config.resolve().parent,
            timeout=timeout, serial=serial,
        )  # fmt: skip
    except RecordChanged as exc:  # the peer was lost again: the newer record is right
        click.echo(f"unfence-peer {volume}: the record stands: {exc}")
        return
    except NotHolder as exc:
        click.echo(f"drorch: error: unfence-peer {volume}: {exc}", err=True)
        sys.exit(EXIT_UNSAFE)
    except (QuorumError, WitnessSetupError, OSError) as exc:
        click.echo(f"drorch: error: unfence-peer {volume}: cannot ask the witness: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"unfence-peer {volume}: the witness cleared its record (epoch {epoch})")


@repl.command("outdate-peer")
@click.option(
    "--control", type=click.Path(path_type=Path), required=True,
    help="The frozen primary's control socket.",
)  # fmt: skip
@click.option(
    "--accept-data-loss",
    is_flag=True,
    help="Acknowledge: writes acknowledged from now on are lost if this site is lost.",
)
@format_option()
@dry_run_option
@yes_option
def outdate_peer(control: Path, accept_data_loss: bool, fmt: str, dry_run: bool, yes: bool) -> None:
    """Declare the peer Outdated without the witness: a frozen sync primary resumes.

    Refused (exit 3) without --accept-data-loss, while the peer is connected, or on a
    secondary (a dry run reports the same). Prefer the fence-peer hook: it leaves a
    witness record that stops the peer's promotion; this leaves none."""
    if _checked(control, "outdate_peer", fmt, dry_run, yes, accept_data_loss=accept_data_loss):
        render(_call(control, "outdate_peer", fmt, accept_data_loss=accept_data_loss), fmt)
