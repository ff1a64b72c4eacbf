"""`drorch drbd ...`: render DRBD resource files and drive DRBD on a node.

Read commands take `--format table|json|yaml`. Commands that can lose data (`primary
--force`, `invalidate`, `resolve --discard-local`, `create-md --force`) need
`--accept-data-loss`. The node defaults to this host's short name (DRBD's own rule).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from drorch.cli.drbd_common import (
    STATUS_COLUMNS,
    config_option,
    drbd_volume,
    fail,
    load,
    node_option,
    pick_node,
    replicator,
)
from drorch.cli.drbd_ops_cmd import OPERATIONS
from drorch.cli.drbd_watch_cmd import FOLLOWING
from drorch.cli.exits import ExitCode
from drorch.cli.output import format_option, render
from drorch.model.types import Cluster, Driver, Volume
from drorch.replication.base import ReplicationError


@click.group()
def drbd() -> None:
    """DRBD volumes: render resource files, operate DRBD on a node, read its status."""


for _operation in (*OPERATIONS, *FOLLOWING):
    drbd.add_command(_operation)


@drbd.command("render")
@config_option
@click.argument("volume")
@click.option(
    "--config-path",
    default="/etc/drorch/cluster.yaml",
    show_default=True,
    help="Where the cluster file lives on the nodes (for the fence-peer handler).",
)
@click.option(
    "--drorch-bin",
    default="drorch",
    show_default=True,
    help="How DRBD's handler finds drorch on the nodes (an absolute path is safest).",
)
def render_cmd(config: Path, volume: str, config_path: str, drorch_bin: str) -> None:
    """Print the DRBD 9 resource file of VOLUME (for /etc/drbd.d/VOLUME.res)."""
    from drorch.replication.drbd.render import RenderError
    from drorch.replication.drbd.render import render as render_resource

    cluster = load(config)
    vol = drbd_volume(cluster, volume)
    try:
        handler = f"{drorch_bin} drbd fence-peer -c {config_path}"
        click.echo(render_resource(cluster, vol, handler=handler), nl=False)
    except RenderError as exc:  # the config validated: the model has the same rules
        fail(str(exc), ExitCode.USAGE)


@drbd.command("install")
@config_option
@node_option
@click.argument("volume")
@click.option("--path", help="Resource file on the node (default /etc/drbd.d/VOLUME.res).")
@click.option("--config-path", default="/etc/drorch/cluster.yaml", show_default=True)
@click.option("--drorch-bin", default="drorch", show_default=True)
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
def install_cmd(
    config: Path,
    node: str | None,
    volume: str,
    path: str | None,
    config_path: str,
    drorch_bin: str,
    dry_run: bool,
) -> None:
    """Render VOLUME and install it on the node (checked by the node's drbdadm first)."""
    from drorch.replication.drbd.install import default_path, install_resource
    from drorch.replication.drbd.render import RenderError
    from drorch.replication.drbd.render import render as render_resource

    cluster = load(config)
    vol = drbd_volume(cluster, volume)
    try:
        text = render_resource(
            cluster, vol, handler=f"{drorch_bin} drbd fence-peer -c {config_path}"
        )
    except RenderError as exc:  # the config validated: the model has the same rules
        fail(str(exc), ExitCode.USAGE)
    with replicator(config, volume, node) as drv:
        result = install_resource(
            drv.runner, volume, text, path or default_path(volume), dry_run=dry_run
        )
        click.echo(result.reason)


@drbd.command("status")
@config_option
@node_option
@click.option("--all-nodes", is_flag=True, help="Every node that holds a replica (both sites).")
@click.argument("volume", required=False)
@click.option(
    "--source",
    type=click.Choice(["json", "events2", "proc"]),
    default="json",
    show_default=True,
    help="drbdsetup status --json, drbdsetup events2 --now, or DRBD 8.4's /proc/drbd.",
)
@format_option()
def status_cmd(
    config: Path, node: str | None, all_nodes: bool, volume: str | None, source: str, fmt: str
) -> None:
    """Replication status of the DRBD volumes on a node (or on every node). A node that
    cannot be asked gets a row with the error instead of stopping the report."""
    cluster = load(config)
    only = drbd_volume(cluster, volume) if volume else None
    drbd_vols = [only] if only else [v for v in cluster.volumes if v.driver is Driver.DRBD]
    if all_nodes:
        names = [n.name for s in cluster.sites for n in s.nodes]
        names = [n for n in names if any(n in v.paths for v in drbd_vols)]
    else:
        names = [pick_node(cluster, only, node)]
    rows: list[dict[str, Any]] = []
    for name in names:
        rows += _node_rows(config, cluster, name, [v for v in drbd_vols if name in v.paths], source)
    if not all_nodes and any("error" in r["extra"] for r in rows):
        render(rows, fmt, STATUS_COLUMNS)
        fail(next(r["extra"]["error"] for r in rows if "error" in r["extra"]))
    render(rows, fmt, STATUS_COLUMNS)


def _node_rows(
    config: Path, cluster: Cluster, name: str, vols: list[Volume], source: str
) -> list[dict[str, Any]]:
    from drorch.replication.drbd.driver import DrbdReplicator
    from drorch.replication.drbd.status_sources import read_status
    from drorch.replication.node_status import node_environment

    env = node_environment(cluster, cluster.node(name)[1], config.resolve().parent)
    rows = []
    try:
        for vol in vols:
            try:
                if source == "json":  # through the driver: adds generation ids and the epoch
                    row = DrbdReplicator(vol, cluster.node(name)[1], env).status().as_dict()
                else:
                    row = read_status(env.runners[name], vol, source).as_dict()
            except ReplicationError as exc:
                row = {"name": vol.name, "role": "unknown", "extra": {"error": str(exc)}}
            row["node"] = name
            rows.append(row)
    finally:
        env.close()
    return rows


@drbd.command("fence-peer")
@config_option
@node_option
def fence_peer_cmd(config: Path, node: str | None) -> None:
    """DRBD's fence-peer handler (set by `render`): ask the witness, exit 3-7 or 1."""
    from drorch.replication.drbd.fence_peer import UNDECIDED, FenceSetupError, run_fence_peer

    cluster = load(config)
    try:
        decision = run_fence_peer(
            cluster, dict(os.environ), node=node, base_dir=config.resolve().parent
        )
    except FenceSetupError as exc:
        click.echo(f"drorch: error: fence-peer: {exc}", err=True)
        sys.exit(UNDECIDED)
    click.echo(f"drorch: fence-peer: {decision.reason} -> exit {decision.exit_code}", err=True)
    sys.exit(decision.exit_code)


@drbd.command("unfence-peer")
@config_option
@node_option
def unfence_peer_cmd(config: Path, node: str | None) -> None:
    """DRBD's unfence-peer handler (set by `render`): the peer is UpToDate again, so ask
    the witness to clear the outdate record. Exit 0 cleared, 1 not (retried by drorch)."""
    from drorch.quorum.client import QuorumError
    from drorch.quorum.fence import WitnessSetupError, record_current
    from drorch.replication.drbd.fence_peer import FenceSetupError, fence_context

    cluster = load(config)
    try:
        ctx = fence_context(cluster, dict(os.environ), node)
        if cluster.witness is None:
            raise FenceSetupError("no witness is configured")
        epoch = record_current(
            cluster.witness, cluster.name, ctx.site, ctx.node, ctx.resource,
            config.resolve().parent,
        )  # fmt: skip
    except (FenceSetupError, WitnessSetupError, QuorumError, OSError) as exc:
        click.echo(f"drorch: error: unfence-peer: {exc} -> exit 1", err=True)
        sys.exit(1)
    click.echo(f"drorch: unfence-peer: {ctx.resource}: record cleared (epoch {epoch})", err=True)
