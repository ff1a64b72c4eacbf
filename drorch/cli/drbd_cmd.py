"""`drorch drbd ...`: render DRBD resource files and drive DRBD on a node.

Read commands take `--format table|json|yaml`. Commands that can lose data (`primary
--force`, `invalidate`, `resolve --discard-local`, `create-md --force`) need
`--accept-data-loss`. The node defaults to this host's short name (DRBD's own rule).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from drorch.cli.output import format_option, render
from drorch.model.types import Cluster, Driver, Volume
from drorch.replication.base import ReplicationError

if TYPE_CHECKING:
    from drorch.replication.drbd.driver import DrbdReplicator
    from drorch.replication.drbd.render import RenderError

STATUS_COLUMNS = [
    "name",
    "node",
    "role",
    "peer_role",
    "disk",
    "peer_disk",
    "connection",
    "out_of_sync_bytes",
    "percent_in_sync",
    "resync_eta_seconds",
    "suspended",
    "quorum",
]

config_option = click.option(
    "-c",
    "--config",
    "config",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Cluster config file.",
)
node_option = click.option("--node", help="Node to act on (default: this host's name).")


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"drorch drbd: {message}", err=True)
    sys.exit(code)


def load(config: Path) -> Cluster:
    from drorch.model.loader import load_cluster
    from drorch.model.reports import ConfigError

    try:
        return load_cluster(config)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    except OSError as exc:
        fail(f"{config}: {exc.strerror or exc}", 2)


def drbd_volume(cluster: Cluster, name: str) -> Volume:
    try:
        volume = cluster.volume(name)
    except KeyError:
        known = ", ".join(v.name for v in cluster.volumes if v.driver is Driver.DRBD)
        fail(f"no volume {name!r} in {cluster.name} (DRBD volumes: {known or 'none'})", 2)
    if volume.driver is not Driver.DRBD:
        fail(f"volume {name} uses driver {volume.driver.value}, not drbd", 2)
    return volume


def pick_node(cluster: Cluster, volume: Volume | None, node: str | None) -> str:
    name = node or socket.gethostname().split(".")[0]
    try:
        cluster.node(name)
    except KeyError:
        hint = "" if node else " (use --node)"
        fail(f"node {name!r} is not in cluster {cluster.name}{hint}", 2)
    if volume is not None and name not in volume.paths:
        fail(f"node {name} holds no replica of {volume.name}", 2)
    return name


@contextmanager
def replicator(config: Path, volume_name: str, node: str | None) -> Iterator[DrbdReplicator]:
    """The DrbdReplicator for VOLUME on the node; typed DRBD errors become exit 1."""
    from drorch.replication.drbd.driver import DrbdReplicator
    from drorch.replication.node_status import node_environment

    cluster = load(config)
    volume = drbd_volume(cluster, volume_name)
    name = pick_node(cluster, volume, node)
    env = node_environment(cluster, cluster.node(name)[1], config.resolve().parent)
    try:
        yield DrbdReplicator(volume, cluster.node(name)[1], env)
    except ReplicationError as exc:
        fail(str(exc))
    finally:
        env.close()


def report_render_error(config: Path, exc: RenderError) -> NoReturn:
    """Each problem as `FILE:LINE:COL: drbd-render: message`, at the volume's setting it
    is about (the file already passed validation, so it parses)."""
    from drorch.model.source import load_located

    root = load_located(config)
    volumes = root.value.get("volumes") if isinstance(root.value, dict) else None
    item = next(
        (
            v
            for v in (volumes.value if volumes is not None else [])
            if isinstance(v.value, dict)
            and getattr(v.value.get("name"), "value", None) == exc.volume
        ),
        None,
    )
    for where, problem in zip(exc.where, exc.problems, strict=True):
        position = item.position if item is not None else root.position
        node = item
        for key in where:
            if node is None or not isinstance(node.value, dict) or key not in node.value:
                break
            position = node.key_positions.get(key, node.value[key].position)
            node = node.value[key]
        click.echo(f"{position}: drbd-render: volume {exc.volume}: {problem}", err=True)
    sys.exit(2)


@click.group()
def drbd() -> None:
    """DRBD volumes: render resource files, operate DRBD on a node, read its status."""


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
    except RenderError as exc:
        report_render_error(config, exc)


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
    except RenderError as exc:
        report_render_error(config, exc)
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
        click.echo(f"drorch fence-peer: {exc}", err=True)
        sys.exit(UNDECIDED)
    click.echo(f"drorch fence-peer: {decision.reason} -> exit {decision.exit_code}", err=True)
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
        click.echo(f"drorch unfence-peer: {exc} -> exit 1", err=True)
        sys.exit(1)
    click.echo(f"drorch unfence-peer: {ctx.resource}: record cleared (epoch {epoch})", err=True)


# The operation commands live in their own module; importing it registers them.
from drorch.cli import drbd_ops_cmd  # noqa: E402, F401
