"""Where things are, for the step families: a volume's replica at a site, a VM in the
model, the simulated world's folder. Every miss is a coded StepFailed, so a step never
guesses at a node or a site. (Private: `load_step_types` imports no `_` module.)"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from drorch.model.types import VM, Service, Volume
from drorch.replication.base import ReplicationError, ReplicationStatus, Replicator
from drorch.runbook.steps.base import Param, ParamKind, StepContext, StepFailed
from drorch.virt.cluster_vms import ClusterVMs

# The arguments every plan step binds (`expand.plan_args`).
TARGET = Param("target", ParamKind.STR, "What the step acts on (a volume, VM or service).")
SITE = Param("site", ParamKind.STR, "The site it acts at.", default="")
NODE = Param(
    "node", ParamKind.STR, "The node it acts on (default: the site's replica).", default=""
)
PLAN_ARGS = (TARGET, SITE, NODE)


def text(args: Mapping[str, object], key: str) -> str:
    value = args.get(key)
    return "" if value is None else str(value)


def names(args: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = args.get(key)
    return tuple(str(v) for v in value) if isinstance(value, tuple | list) else ()


def number(args: Mapping[str, object], key: str, default: float) -> float:
    value = args.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return default


def is_sim(ctx: StepContext) -> bool:
    return ctx.cluster.hypervisor.driver == "sim"


def sim_dir(ctx: StepContext) -> Path | None:
    """The simulated world's folder (`hypervisor.state_dir`), or None for a real cluster."""
    if not is_sim(ctx):
        return None
    from drorch.replication.sim import resolve_state_dir

    return resolve_state_dir(ctx.env, ctx.cluster.hypervisor.state_dir)


def site_name(ctx: StepContext, site: str) -> str:
    known = [s.name for s in ctx.cluster.sites]
    if site not in known:
        raise StepFailed("unknown-site", f"no site {site!r} (sites: {', '.join(known)})")
    return site


def other_site(ctx: StepContext, site: str) -> str:
    others = [s.name for s in ctx.cluster.sites if s.name != site]
    if len(others) != 1:
        raise StepFailed("unknown-site", f"site {site!r} has no single peer site")
    return others[0]


def site_of(ctx: StepContext, node: str) -> str:
    try:
        return ctx.cluster.node(node)[0].name
    except KeyError:
        raise StepFailed("unknown-node", f"no node {node!r} in {ctx.cluster.name}") from None


def volume(ctx: StepContext, name: str) -> Volume:
    try:
        return ctx.cluster.volume(name)
    except KeyError:
        known = ", ".join(v.name for v in ctx.cluster.volumes) or "none"
        raise StepFailed("unknown-volume", f"no volume {name!r} ({known})") from None


def volume_names(ctx: StepContext, given: tuple[str, ...]) -> list[str]:
    """The named volumes (checked), or every volume of the cluster."""
    return [volume(ctx, v).name for v in given] if given else [v.name for v in ctx.cluster.volumes]


def replica_node(ctx: StepContext, vol: Volume, site: str = "", node: str = "") -> str:
    """`node` when given (it must hold a replica), else the replica node of `site`."""
    if node:
        if node not in vol.paths:
            raise StepFailed("no-replica", f"volume {vol.name} has no replica on node {node}")
        return node
    site_name(ctx, site)
    nodes = {n.name for n in ctx.cluster.site(site).nodes}
    found = next((n for n in vol.paths if n in nodes), None)
    if found is None:
        raise StepFailed("no-replica", f"volume {vol.name} has no replica at site {site}")
    return found


def replica(ctx: StepContext, name: str, site: str = "", node: str = "") -> tuple[str, Replicator]:
    vol = volume(ctx, name)
    where = replica_node(ctx, vol, site, node)
    rep = ctx.env.replicators.get((vol.name, where))
    if rep is None:
        raise StepFailed(
            "no-replicator", f"no replicator for {vol.name}@{where} in this environment"
        )
    return where, rep


def status(rep: Replicator, what: str) -> ReplicationStatus:
    try:
        return rep.status()
    except ReplicationError as exc:
        raise StepFailed("replica-unreachable", f"{what}: {exc}") from exc


def peer_status(ctx: StepContext, name: str, node: str) -> ReplicationStatus | None:
    """The other replica's status, or None when it cannot be asked."""
    vol = volume(ctx, name)
    peer = next((n for n in vol.paths if n != node), None)
    rep = ctx.env.replicators.get((vol.name, peer)) if peer else None
    if rep is None:
        return None
    try:
        return rep.status()
    except ReplicationError:
        return None


def cluster_vms(ctx: StepContext) -> ClusterVMs:
    return ClusterVMs(ctx.cluster, ctx.env)


def vm(ctx: StepContext, name: str) -> VM:
    for v in ctx.cluster.vms:
        if name in (v.name, v.domain):
            return v
    known = ", ".join(v.name for v in ctx.cluster.vms) or "none"
    raise StepFailed("unknown-vm", f"no VM {name!r} in {ctx.cluster.name} ({known})")


def service(ctx: StepContext, name: str) -> Service:
    for s in ctx.cluster.services:
        if s.name == name:
            return s
    known = ", ".join(s.name for s in ctx.cluster.services) or "none"
    raise StepFailed("unknown-service", f"no service {name!r} in {ctx.cluster.name} ({known})")
