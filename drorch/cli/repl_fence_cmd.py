"""`drorch repl fence-peer`: the fence-peer hook of a pyrepl sync primary.

A sync primary with `fencing: resource-only` that loses its peer freezes (acknowledges
nothing) and runs its `--fence-peer-cmd`, which drorch sets to

    drorch repl fence-peer -c CONFIG --volume V --node N

This asks the witness, as N's site, to record durably that only this site's copy of V is
current (`drorch.quorum.fence.record_outdate`). Exit codes:

- 0: the record is on the witness's disk: the primary may resume (peer Outdated);
- 1: the witness cannot be asked (unreachable, no witness or client cert configured);
- 3: the witness would not record it: this site does not hold the quorum lease.
- 2: usage or config errors (unknown volume or node).

Any non-zero exit keeps the primary frozen; it retries. `drorch repl outdate-peer
--accept-data-loss` is the operator's override.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from drorch.cli.loading import EXIT_CONFIG, load_or_exit
from drorch.cli.repl_cmd import EXIT_FAILED, EXIT_UNSAFE, repl

EXIT_RECORDED = 0


@repl.command("fence-peer")
@click.option(
    "-c", "--config", "config", type=click.Path(path_type=Path), required=True,
    help="The cluster file (its witness: address, pinned fingerprint, this site's cert).",
)  # fmt: skip
@click.option("--volume", required=True, help="The volume whose peer is lost.")
@click.option("--node", required=True, help="This node (the frozen primary).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
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
        sys.exit(EXIT_UNSAFE)
    click.echo(
        f"{where}: the witness recorded durably that only site {site}'s copy of {volume} "
        f"is current since epoch {answer.recorded}: the peer is Outdated"
    )
    sys.exit(EXIT_RECORDED)


@repl.command("unfence-peer")
@click.option(
    "-c", "--config", "config", type=click.Path(path_type=Path), required=True,
    help="The cluster file (its witness: address, pinned fingerprint, this site's cert).",
)  # fmt: skip
@click.option("--volume", required=True, help="The volume whose peer is UpToDate again.")
@click.option("--node", required=True, help="This node (the primary).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
def unfence_peer(config: Path, volume: str, node: str, timeout: float) -> None:
    """The peer resynced and is UpToDate: clear the witness's outdate record (`current`).
    Exit 0 cleared; 3 this site does not hold the lease; 1 the witness cannot be asked."""
    from drorch.quorum.client import NotHolder, QuorumError
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
            timeout=timeout,
        )  # fmt: skip
    except NotHolder as exc:
        click.echo(f"drorch: error: unfence-peer {volume}: {exc}", err=True)
        sys.exit(EXIT_UNSAFE)
    except (QuorumError, WitnessSetupError, OSError) as exc:
        click.echo(f"drorch: error: unfence-peer {volume}: cannot ask the witness: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"unfence-peer {volume}: the witness cleared its record (epoch {epoch})")
