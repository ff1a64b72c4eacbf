"""Semantic rules over a parsed `Cluster`: names, references, placement, dependencies.

Each rule appends coded reports to the context, positioned through `ctx.where`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from drorch.model.address import AddressError, parse_host_port, parse_ssh_target
from drorch.model.dependency_cycles import check_cycles
from drorch.model.field_values import NAME_RE, suggestion
from drorch.model.fields import Context, Path
from drorch.model.types import (
    VM,
    Cluster,
    Driver,
    Monitor,
    MonitorType,
    ReplicationMode,
    Service,
    Site,
)


def check_sites(c: Cluster, ctx: Context) -> None:
    site_names = [s.name for s in c.sites]
    seen: dict[str, str] = {}
    for i, site in enumerate(c.sites):
        if not NAME_RE.match(site.name):
            ctx.error(
                "bad-name", f"site name {site.name!r} is not a valid name", ctx.where.at("sites", i)
            )
        if not site.nodes:
            ctx.error("empty-site", f"site {site.name!r} has no nodes", ctx.where.at("sites", i))
        for j, node in enumerate(site.nodes):
            where = ctx.where.at("sites", i, "nodes", j)
            if node.name in seen:
                ctx.error(
                    "duplicate-name",
                    f"node {node.name!r} is already defined at site {seen[node.name]}",
                    where,
                )
            seen.setdefault(node.name, site.name)
            if node.address != "local":
                try:
                    parse_ssh_target(node.address)
                except AddressError as exc:
                    ctx.error(
                        "bad-address",
                        f"node {node.name}: {exc}",
                        ctx.where.at("sites", i, "nodes", j, "address"),
                    )
    if len(c.sites) == 2 and set(c.sites[0].networks) != set(c.sites[1].networks):
        a, b = c.sites
        only = sorted(set(a.networks) ^ set(b.networks))
        ctx.error(
            "site-networks",
            f"sites {a.name} and {b.name} must name the same networks (the other site's domain"
            f" XML is mapped through them); only one names: {', '.join(only)}",
            ctx.where.at("sites", 0 if set(a.networks) - set(b.networks) else 1),
        )
    if c.primary_site and len(c.sites) == 2 and c.primary_site not in site_names:
        ctx.error(
            "unknown-site",
            f"primary_site {c.primary_site!r} is not a site{suggestion(c.primary_site, site_names)}"
            f" (sites: {', '.join(site_names)})",
            ctx.where.at("primary_site"),
        )


def _node_sites(c: Cluster) -> dict[str, str]:
    """node -> site; a duplicated node name keeps its first site (the repeat is reported)."""
    out: dict[str, str] = {}
    for s in c.sites:
        for n in s.nodes:
            out.setdefault(n.name, s.name)
    return out


def check_unique_resources(c: Cluster, ctx: Context) -> None:
    seen: dict[str, tuple[str, int]] = {}  # the first use of each name: its key and index
    groups: Sequence[tuple[str, Sequence[object]]] = (
        ("volumes", c.volumes),
        ("vms", c.vms),
        ("services", c.services),
    )
    for key, items in groups:
        for i, item in enumerate(items):
            name = str(getattr(item, "name", ""))
            first = seen.get(name)
            if first is not None:
                first_key, first_i = first
                used_by = (
                    f"a {first_key[:-1].replace('vm', 'VM')} at line"
                    f" {ctx.where.at(first_key, first_i).line}"
                )
                ctx.error(
                    "duplicate-name",
                    f"{name!r} is already used by {used_by}; volume, VM and service names"
                    " share one namespace",
                    ctx.where.at(key, i, "name"),
                )
            else:
                seen[name] = (key, i)


def check_volumes(c: Cluster, ctx: Context) -> None:
    node_site = _node_sites(c)
    ports: dict[tuple[str, int], str] = {}
    for i, vol in enumerate(c.volumes):
        per_site: dict[str, list[str]] = defaultdict(list)
        for node in vol.paths:
            if node not in node_site:
                ctx.error(
                    "unknown-node",
                    f"volume {vol.name}: {node!r} is not a node{suggestion(node, list(node_site))}",
                    ctx.where.at("volumes", i, "paths", node),
                )
                continue
            per_site[node_site[node]].append(node)
        # with a wrong site count or an empty site, per-site checks would only repeat that
        for site in c.sites if len(c.sites) == 2 else ():
            nodes = per_site.get(site.name, [])
            if not nodes and not site.nodes:
                continue
            if not nodes:
                ctx.error(
                    "volume-site-missing",
                    f"volume {vol.name} has no path on any node of site {site.name};"
                    " each site needs one replica",
                    ctx.where.at("volumes", i, "paths"),
                )
            elif len(nodes) > 1:
                ctx.error(
                    "volume-site-ambiguous",
                    f"volume {vol.name} has paths on {', '.join(nodes)} at site {site.name};"
                    " a two-site volume has exactly one replica per site",
                    ctx.where.at("volumes", i, "paths", nodes[1]),
                )
        wanted: list[tuple[int, Path, str]] = [(vol.port, ("volumes", i, "port"), "port")]
        if vol.pyrepl.nbd_port is not None:
            wanted.append((vol.pyrepl.nbd_port, ("volumes", i, "pyrepl", "nbd_port"), "nbd_port"))
        for port, path, label in wanted:
            if port == 0:  # invalid port, already reported
                continue
            for node in vol.paths:
                holder = ports.get((node, port))
                if holder is not None:
                    ctx.error(
                        "port-conflict",
                        f"volume {vol.name}: {label} {port} on node {node} is already used by"
                        f" {holder}",
                        ctx.where.at(*path),
                    )
                    break
            for node in vol.paths:
                ports.setdefault((node, port), f"volume {vol.name}")
        for opts, key in ((vol.drbd.on_congestion, "drbd"), (vol.pyrepl.on_congestion, "pyrepl")):
            if opts != "block" and vol.mode is ReplicationMode.SYNC and key == vol.driver.value:
                ctx.error(
                    "congestion-needs-async",
                    f"volume {vol.name}: on_congestion {opts} only applies to async"
                    " replication; a sync volume always waits for the peer",
                    ctx.where.at("volumes", i, key, "on_congestion"),
                )


def _monitor_target_problem(m: Monitor) -> str | None:
    if m.type is MonitorType.TCP:
        try:
            parse_host_port(m.target)
        except AddressError as exc:
            return str(exc)
    if m.type is MonitorType.HTTP and not m.target.startswith(("http://", "https://")):
        return f"{m.target!r} is not an http:// or https:// URL"
    return None


def check_monitors(
    owner: str,
    path: Path,
    monitors: Sequence[Monitor],
    ctx: Context,
    targets: dict[tuple[MonitorType, str], str | None],
) -> None:
    """`targets`: each target's problem (or None) by monitor type and target, as found
    so far (many monitors share both)."""
    seen: set[str] = set()
    for k, m in enumerate(monitors):
        where: Path = (*path, "monitors", k)
        if m.name in seen:
            ctx.error(
                "duplicate-name",
                f"{owner}: monitor {m.name!r} is repeated",
                ctx.where.at(*where, "name"),
            )
        seen.add(m.name)
        if m.timeout >= m.interval:
            ctx.error(
                "monitor-timeout",
                f"{owner}: monitor {m.name} has timeout {m.timeout:g}s, which must be shorter"
                f" than its interval {m.interval:g}s",
                ctx.where.at(*where, "timeout"),
            )
        target = (m.type, m.target)
        if target in targets:
            problem = targets[target]
        else:
            problem = targets[target] = _monitor_target_problem(m)
        if problem:
            ctx.error(
                "bad-monitor-target",
                f"{owner}: monitor {m.name}: {problem}",
                ctx.where.at(*where, "target"),
            )


def check_resources(c: Cluster, ctx: Context) -> None:
    volumes = {v.name for v in c.volumes}
    kinds: dict[str, VM | Service] = {r.name: r for r in c.vms}
    kinds.update({r.name: r for r in c.services})
    site_names = {s.name: s for s in c.sites}
    entries: list[tuple[str, int, VM | Service]] = [
        *(("vms", i, vm) for i, vm in enumerate(c.vms)),
        *(("services", i, svc) for i, svc in enumerate(c.services)),
    ]
    targets: dict[tuple[MonitorType, str], str | None] = {}
    for key, i, res in entries:
        label = f"{'VM' if key == 'vms' else 'service'} {res.name}"
        if isinstance(res, VM):
            for j, vol in enumerate(res.volumes):
                if vol not in volumes:
                    ctx.error(
                        "unknown-reference",
                        f"{label} uses volume {vol!r}, which is not defined"
                        f"{suggestion(vol, sorted(volumes))}",
                        ctx.where.at(key, i, "volumes", j),
                    )
        else:
            check_placement(res, i, site_names, ctx)
        for j, dep in enumerate(res.depends_on):
            target = kinds.get(dep)
            if target is not None and not (res.migratable and not target.migratable):
                continue  # fine: no report, so no position needed
            where = ctx.where.at(key, i, "depends_on", j)
            if target is None:
                hint = " (a VM lists its disks under `volumes:`)" if dep in volumes else ""
                ctx.error(
                    "unknown-reference",
                    f"{label} depends on {dep!r}, which is not a VM or service"
                    f"{hint or suggestion(dep, sorted(kinds))}",
                    where,
                )
            elif res.migratable and not target.migratable:
                ctx.error(
                    "migratable-depends-on-fixed",
                    f"{label} is migratable but depends on {dep}, which is not: a live"
                    f" migration would leave {res.name} running without {dep}",
                    where,
                )
        check_monitors(label, (key, i), res.monitors, ctx, targets)
    check_cycles(entries, ctx)


def check_placement(svc: Service, i: int, sites: dict[str, Site], ctx: Context) -> None:
    for site, node in svc.placement.items():
        where = ctx.where.at("services", i, "placement", site)
        site_obj = sites.get(site)
        if site_obj is None:
            ctx.error(
                "unknown-site",
                f"service {svc.name}: placement names {site!r}, which is not a site"
                f"{suggestion(site, sorted(sites))}",
                where,
            )
            continue
        nodes = [n.name for n in site_obj.nodes]
        if node not in nodes:
            ctx.error(
                "placement-node-not-in-site",
                f"service {svc.name}: node {node!r} is not at site {site}"
                f" (its nodes: {', '.join(nodes) or 'none'})",
                where,
            )


def check_drills(c: Cluster, ctx: Context) -> None:
    site_names = [s.name for s in c.sites]
    seen: set[str] = set()
    for i, drill in enumerate(c.drills):
        if drill.name in seen:
            ctx.error(
                "duplicate-name",
                f"drill {drill.name!r} is repeated",
                ctx.where.at("drills", i, "name"),
            )
        seen.add(drill.name)
        if drill.target not in site_names:
            ctx.error(
                "unknown-site",
                f"drill {drill.name}: target {drill.target!r} is not a site"
                f"{suggestion(drill.target, site_names)}",
                ctx.where.at("drills", i, "target"),
            )


def check_drbd_volumes(c: Cluster, ctx: Context) -> None:
    """What the DRBD driver needs of a `driver: drbd` volume (rules_drbd), at the setting
    each problem is about: the same rules `drbd render` applies."""
    from drorch.model.rules_drbd import drbd_only

    for i, vol in enumerate(c.volumes):
        if vol.driver is Driver.DRBD:
            for where, message in drbd_only(c, vol):
                ctx.error(
                    "drbd-option",
                    f"volume {vol.name}: {message}",
                    ctx.where.at("volumes", i, *where),
                )


def check_local_pyrepl_ports(c: Cluster, ctx: Context) -> None:
    """Two replicas on one machine (`address: local`, no replication_address) listen on
    `port + i` and export NBD on `nbd_port + i` (i = the node's place in `paths`; see
    drorch/replication/pyrepl/driver.py), so `port: 7789` and `port: 7790` collide there."""
    if c.hypervisor.simulates_replication:
        return  # simulated volumes open no port
    nodes = {n.name: n for s in c.sites for n in s.nodes}
    taken: dict[int, tuple[str, int, str]] = {}  # port -> volume, index, label
    for i, vol in enumerate(c.volumes):
        if vol.driver is not Driver.PYREPL:
            continue
        wanted: list[tuple[int, int, Path, str]] = []
        for index, name in enumerate(vol.paths):
            node = nodes.get(name)
            if node is None or not node.is_local or node.replication_address:
                continue  # elsewhere each replica listens on its own host's address
            if vol.port:
                port: Path = ("volumes", i, "port")
                wanted.append((vol.port + index, index, port, f"port {vol.port}+{index}"))
            if vol.pyrepl.nbd_port:
                nbd: Path = ("volumes", i, "pyrepl", "nbd_port")
                label = f"nbd_port {vol.pyrepl.nbd_port}+{index}"
                wanted.append((vol.pyrepl.nbd_port + index, index, nbd, label))
        for number, index, where, label in wanted:
            holder = taken.get(number)
            # the same port at the same place on one node is check_volumes' report already
            if holder is not None and holder[0] != vol.name and holder[1] != index:
                ctx.error(
                    "port-conflict",
                    f"volume {vol.name}: {label} = {number} on this machine is already used by"
                    f" volume {holder[0]} ({holder[2]}) (local replicas listen on port + their"
                    " place in paths)",
                    ctx.where.at(*where),
                )
                continue
            taken.setdefault(number, (vol.name, index, label))


def check_all(c: Cluster, ctx: Context) -> None:
    check_sites(c, ctx)
    check_unique_resources(c, ctx)
    check_volumes(c, ctx)
    check_local_pyrepl_ports(c, ctx)
    check_drbd_volumes(c, ctx)
    check_resources(c, ctx)
    check_drills(c, ctx)
