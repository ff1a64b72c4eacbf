"""Explicit driver map: `hypervisor.driver` -> class, imported lazily (libvirt is optional)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drorch.environment import Environment
    from drorch.model.types import Cluster, Site
    from drorch.virt.base import Hypervisor

HYPERVISOR_DRIVERS: dict[str, str] = {
    "sim": "drorch.virt.sim:SimHypervisor",
    "libvirt": "drorch.virt.libvirt:LibvirtHypervisor",
}


def open_hypervisor(cluster: Cluster, site: Site, env: Environment) -> Hypervisor:
    """Build the hypervisor of `site`; the class takes (cluster, site, env)."""
    module_name, _, attr = HYPERVISOR_DRIVERS[cluster.hypervisor.driver].partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    hypervisor: Hypervisor = cls(cluster, site, env)
    return hypervisor
