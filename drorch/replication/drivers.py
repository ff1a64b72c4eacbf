"""Explicit driver map: config key -> replicator class, imported lazily."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drorch.environment import Environment
    from drorch.model.types import Node, Volume
    from drorch.replication.base import Replicator

REPLICATOR_DRIVERS: dict[str, str] = {
    "drbd": "drorch.replication.drbd.driver:DrbdReplicator",
    "pyrepl": "drorch.replication.pyrepl.driver:PyreplReplicator",
}


def open_replicator(volume: Volume, node: Node, env: Environment) -> Replicator:
    """Build the replicator for `volume` on `node`; the class takes (volume, node, env)."""
    module_name, _, attr = REPLICATOR_DRIVERS[volume.driver.value].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    replicator: Replicator = cls(volume, node, env)
    return replicator
