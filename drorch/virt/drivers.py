"""Explicit driver map: `hypervisor.driver` -> class, imported lazily (libvirt is optional)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drorch.registry import Registry, subclass_of
from drorch.virt.base import Hypervisor

if TYPE_CHECKING:
    from drorch.environment import Environment
    from drorch.model.types import Cluster, Site

HYPERVISOR_DRIVERS: Registry[type[Hypervisor]] = Registry(
    "hypervisor driver",
    {
        "sim": "drorch.virt.sim:SimHypervisor",
        "libvirt": "drorch.virt.libvirt:LibvirtHypervisor",
    },
    subclass_of(Hypervisor),
)


def open_hypervisor(cluster: Cluster, site: Site, env: Environment) -> Hypervisor:
    """Build the hypervisor of `site`; the class takes (cluster, site, env)."""
    cls: type[Any] = HYPERVISOR_DRIVERS.load(cluster.hypervisor.driver)
    hypervisor: Hypervisor = cls(cluster, site, env)
    return hypervisor
