"""Explicit driver map: config key -> replicator class, imported lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drorch.registry import Registry, subclass_of
from drorch.replication.base import Replicator

if TYPE_CHECKING:
    from drorch.environment import Environment
    from drorch.model.types import Node, Volume

REPLICATOR_DRIVERS: Registry[type[Replicator]] = Registry(
    "replication driver",
    {
        "drbd": "drorch.replication.drbd.driver:DrbdReplicator",
        "pyrepl": "drorch.replication.pyrepl.driver:PyreplReplicator",
    },
    subclass_of(Replicator),
)


def open_replicator(volume: Volume, node: Node, env: Environment) -> Replicator:
    """Build the replicator for `volume` on `node`; the class takes (volume, node, env)."""
    cls: type[Any] = REPLICATOR_DRIVERS.load(volume.driver.value)
    replicator: Replicator = cls(volume, node, env)
    return replicator
