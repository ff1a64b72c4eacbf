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


def _depths(items: list[Resource]) -> dict[str, int]:
    """Layer of each resource: 0 without dependencies, else 1 + its deepest dependency."""
    by_name = {r.name: r for r in items}
    depth: dict[str, int] = {}
    for root in items:
        if root.name in depth:
            continue
        # iterative DFS (no recursion limit on long chains); `path` detects cycles
        stack: list[tuple[Resource, int]] = [(root, 0)]
        path: set[str] = {root.name}
        while stack:
            res, i = stack[-1]
            deps = [d for d in res.depends_on if d in by_name]
            if i < len(deps):
                stack[-1] = (res, i + 1)
                dep = deps[i]
                if dep in depth:
                    continue
                if dep in path:
                    cycle = [r.name for r, _ in stack]
                    names = ", ".join(sorted({*cycle[cycle.index(dep) :], dep}))
                    raise DependencyCycle(f"dependency cycle among: {names}")
                path.add(dep)
                stack.append((by_name[dep], 0))
                continue
            depth[res.name] = 1 + max((depth[d] for d in deps), default=-1)
            path.discard(res.name)
            stack.pop()
    return depth


def start_order(cluster: Cluster, only: Iterable[str] | None = None) -> list[Resource]:
    """Every resource after everything it depends on, layer by layer (each layer in config
    order). `only` restricts the result; the order still honours dependencies through
    resources left out."""
    items = resources(cluster)
    depth = _depths(items)
    index = {r.name: i for i, r in enumerate(items)}
    ordered = sorted(items, key=lambda r: (depth[r.name], index[r.name]))
    if only is not None:
        wanted = set(only)
        ordered = [r for r in ordered if r.name in wanted]
    return ordered


def stop_order(cluster: Cluster, only: Iterable[str] | None = None) -> list[Resource]:
    """Every resource before everything it depends on (the reverse of start order)."""
    return list(reversed(start_order(cluster, only)))


def dependents(cluster: Cluster, name: str) -> list[str]:
    """Names of resources that depend on `name` directly, in config order."""
    return dependents_map(cluster).get(name, [])


def dependents_map(cluster: Cluster) -> dict[str, list[str]]:
    """name -> names of the resources that depend on it directly, in config order."""
    out: dict[str, list[str]] = {}
    for r in resources(cluster):
        for dep in r.depends_on:
            out.setdefault(dep, []).append(r.name)
    return out
