"""Start order (bottom-up: dependencies first) and stop order (top-down: dependents first).

Resources are the cluster's VMs and services; ties keep the order of the config file, so
a plan reads in the order the operator wrote things. Validation rejects cycles; should one
slip through, `DependencyCycle` names it rather than looping.
"""

from __future__ import annotations

from collections.abc import Iterable

from drorch.model.types import VM, Cluster, Service

Resource = VM | Service


class DependencyCycle(ValueError):
    """The dependency graph has a cycle (the config validator reports it with a line)."""


def resources(cluster: Cluster) -> list[Resource]:
    """VMs then services, in config order."""
    return [*cluster.vms, *cluster.services]


def start_order(cluster: Cluster, only: Iterable[str] | None = None) -> list[Resource]:
    """Every resource after everything it depends on. `only` restricts the result (the
    relative order still honours dependencies through resources left out)."""
    items = resources(cluster)
    by_name = {r.name: r for r in items}
    done: set[str] = set()
    ordered: list[Resource] = []
    remaining = list(items)
    while remaining:
        ready = [r for r in remaining if all(d in done or d not in by_name for d in r.depends_on)]
        if not ready:
            names = ", ".join(r.name for r in remaining)
            raise DependencyCycle(f"dependency cycle among: {names}")
        for r in ready:
            done.add(r.name)
            ordered.append(r)
        remaining = [r for r in remaining if r.name not in done]
    if only is not None:
        wanted = set(only)
        ordered = [r for r in ordered if r.name in wanted]
    return ordered


def stop_order(cluster: Cluster, only: Iterable[str] | None = None) -> list[Resource]:
    """Every resource before everything it depends on (the reverse of start order)."""
    return list(reversed(start_order(cluster, only)))


def dependents(cluster: Cluster, name: str) -> list[str]:
    """Names of resources that depend on `name` directly, in config order."""
    return [r.name for r in resources(cluster) if name in r.depends_on]
