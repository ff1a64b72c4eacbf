"""Every volume's replication status on one node, whatever its driver.

`drorch repl status -c CONFIG --node NODE` and `drorch drbd status` call this. The node's
commands run through its runner (`address: local` -> this machine, else ssh). DRBD
volumes are always asked through DRBD itself (drbdsetup), never a simulation: what the
kernel says is the truth an operator needs. Other drivers come from the environment the
cluster builds (e.g. pyrepl, or the sim replicator of a `sim` lab).

`volume_environment()` and `volume_replicator()` give a command that acts on one volume
(`drorch repl resolve -c`) the same choice of driver without opening any hypervisor.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

from drorch.clock import Clock
from drorch.environment import Environment
from drorch.model.loader import load_cluster
from drorch.model.types import Cluster, Driver, Node, Volume
from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationError,
    ReplicationStatus,
    Replicator,
    Role,
)
from drorch.replication.drivers import open_replicator


class UnknownNode(KeyError):
    """The node is not in the cluster file."""


def node_environment(
    cluster: Cluster, node: Node, base_dir: Path, clock: Clock | None = None
) -> Environment:
    """An environment with just this node's runner (no hypervisors are opened)."""
    from drorch.envbuild import SshSettings, make_runner

    env = Environment(base_dir=base_dir)
    if clock is not None:
        env.clock = clock
    env.runners[node.name] = make_runner(node, env.clock, SshSettings(), base_dir)
    return env


def volume_environment(
    cluster: Cluster, volume: Volume, base_dir: Path, clock: Clock | None = None
) -> Environment:
    """An environment with the runners of every node holding `volume` (no hypervisors
    are opened): enough to ask and act on that volume's replicators."""
    from drorch.envbuild import SshSettings, make_runner

    env = Environment(base_dir=base_dir)
    if clock is not None:
        env.clock = clock
    for name in volume.paths:
        _, node = cluster.node(name)
        env.runners[name] = make_runner(node, env.clock, SshSettings(), base_dir)
    return env


def volumes_on(cluster: Cluster, node: str) -> list[Volume]:
    return [v for v in cluster.volumes if node in v.paths]


def volume_replicator(cluster: Cluster, volume: Volume, node: Node, env: Environment) -> Replicator:
    """The replicator an operator command uses for `volume` on `node`: DRBD volumes always
    through DRBD itself; else the one `env` already holds, or the one the cluster
    configures (the sim replicator under `hypervisor.driver: sim`, else the driver's)."""
    if volume.driver is Driver.DRBD:
        return open_replicator(volume, node, env)
    existing = env.replicators.get((volume.name, node.name))
    if existing is not None:
        return existing
    from drorch.envbuild import open_volume_replicator

    return open_volume_replicator(cluster, volume, node, env)


def _replicator_status(
    cluster: Cluster, volume: Volume, node: Node, env: Environment
) -> ReplicationStatus:
    return volume_replicator(cluster, volume, node, env).status()


def _error_row(volume: Volume, node: str, exc: Exception) -> dict[str, Any]:
    """A volume whose node could not be asked still gets a row (never a silent gap)."""
    row = ReplicationStatus(
        name=volume.name,
        role=Role.UNKNOWN,
        disk=DiskState.UNKNOWN,
        connection=ConnState.STANDALONE,
        mode=volume.mode.value,
        extra=MappingProxyType({"error": f"{type(exc).__name__}: {exc}"}),
    ).as_dict()
    row["driver"] = volume.driver.value
    row["node"] = node
    return row


def cluster_volume_statuses(cluster: Cluster, node: str, env: Environment) -> list[dict[str, Any]]:
    """Statuses (as dicts, plus `driver` and `node`) of every volume held on `node`."""
    try:
        _, node_obj = cluster.node(node)
    except KeyError:
        raise UnknownNode(f"node {node!r} is not in cluster {cluster.name}") from None
    rows: list[dict[str, Any]] = []
    for volume in volumes_on(cluster, node):
        try:
            row = _replicator_status(cluster, volume, node_obj, env).as_dict()
        except ReplicationError as exc:
            rows.append(_error_row(volume, node, exc))
            continue
        row["driver"] = volume.driver.value
        row["node"] = node
        rows.append(row)
    return rows


def volume_statuses(config_path: Path, node: str) -> list[dict[str, Any]]:
    """Load the cluster, build the environment, and report every volume on `node`.

    Raises ConfigError (bad file, every problem with FILE:LINE:COL) and UnknownNode."""
    path = Path(config_path)
    cluster = load_cluster(path)
    try:
        _, node_obj = cluster.node(node)
    except KeyError:
        raise UnknownNode(f"node {node!r} is not in cluster {cluster.name}") from None
    base = path.resolve().parent
    if any(v.driver is not Driver.DRBD for v in volumes_on(cluster, node)):
        from drorch.envbuild import build_environment_report

        env, _problems = build_environment_report(cluster, base)
    else:
        env = node_environment(cluster, node_obj, base)
    try:
        return cluster_volume_statuses(cluster, node, env)
    finally:
        env.close()
