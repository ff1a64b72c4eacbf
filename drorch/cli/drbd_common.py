"""What the `drorch drbd` commands share: the cluster, the DRBD volume and node named on
the command line (unknown ones exit 2), and a DrbdReplicator whose typed errors become
drorch's exit codes (1 failed, 3 refused as unsafe, 4 split brain, 5 stale epoch)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from drorch.cli.exits import ExitCode
from drorch.cli.exits import fail as _fail
from drorch.cli.loading import config_option, load_or_exit
from drorch.model.types import Cluster, Driver, Volume
from drorch.replication.base import (
    ReplicationError,
    SplitBrain,
    StaleEpoch,
    UnsafeOperation,
)

if TYPE_CHECKING:
    from drorch.replication.drbd.driver import DrbdReplicator

__all__ = ["config_option"]

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

node_option = click.option("--node", help="Node to act on (default: this host's name).")


def fail(message: str, code: int = ExitCode.FAILED) -> NoReturn:
    _fail(message, code)


def exit_code(exc: ReplicationError) -> ExitCode:
    """The exit code of a replication error."""
    if isinstance(exc, SplitBrain):
        return ExitCode.SPLIT_BRAIN
    if isinstance(exc, StaleEpoch):
        return ExitCode.STALE_EPOCH
    if isinstance(exc, UnsafeOperation):
        return ExitCode.REFUSED
    return ExitCode.FAILED


def load(config: Path) -> Cluster:
    return load_or_exit(config)


def drbd_volume(cluster: Cluster, name: str) -> Volume:
    try:
        volume = cluster.volume(name)
    except KeyError:
        known = ", ".join(v.name for v in cluster.volumes if v.driver is Driver.DRBD)
        fail(
            f"no volume {name!r} in {cluster.name} (DRBD volumes: {known or 'none'})",
            ExitCode.USAGE,
        )
    if volume.driver is not Driver.DRBD:
        fail(f"volume {name} uses driver {volume.driver.value}, not drbd", ExitCode.USAGE)
    return volume


def pick_node(cluster: Cluster, volume: Volume | None, node: str | None) -> str:
    name = node or socket.gethostname().split(".")[0]
    try:
        cluster.node(name)
    except KeyError:
        hint = "" if node else " (use --node)"
        fail(f"node {name!r} is not in cluster {cluster.name}{hint}", ExitCode.USAGE)
    if volume is not None and name not in volume.paths:
        fail(f"node {name} holds no replica of {volume.name}", ExitCode.USAGE)
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
        fail(str(exc), exit_code(exc))
    finally:
        env.close()
