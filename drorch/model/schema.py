"""The config file's schema: turn a located YAML tree into a `Cluster`, reporting every
shape problem (unknown keys, wrong types, bad units, missing keys) at its position.

Semantic rules (references, cycles, timing) run afterwards on the model (rules.py,
timing.py) and find positions through `ctx.where`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, TypeVar, cast

from drorch.model.address import AddressError, normalise_fingerprint, parse_host_port
from drorch.model.cron import CronError, parse_cron, zone
from drorch.model.fields import MISSING, Context, Fields, Path, expect_mapping
from drorch.model.schema_resources import parse_service, parse_vm, parse_volume
from drorch.model.source import Located
from drorch.model.types import (
    AgentSettings,
    Cluster,
    Drill,
    DrillKind,
    DrillTargets,
    FailoverMode,
    FenceAgent,
    Fencing,
    Hypervisors,
    MigrationPolicy,
    Node,
    QuorumTimings,
    SelfFence,
    Site,
    WatchdogKind,
    Witness,
)

T = TypeVar("T")
HYPERVISOR_DRIVERS = ("sim", "libvirt")
FENCE_AGENT = re.compile(r"^fence_[a-z0-9_]+$")


def parse_node(loc: Located, path: Path, ctx: Context) -> Node | None:
    f = Fields(loc, path, ctx, "node")
    name = f.name()
    node = Node(
        name,
        f.text("address", "local"),
        f.text("libvirt_uri", None),
        replication_address=f.text("replication_address", None),
        migration_uri=f.text("migration_uri", None),
        agent_cert=f.text("agent_cert", None),
    )
    f.done()
    if node.replication_address is not None:
        try:
            ipaddress.ip_address(node.replication_address)
        except ValueError:
            ctx.error(
                "bad-address",
                f"node {name}: replication_address {node.replication_address!r} is not an"
                " IPv4 or IPv6 address",
                ctx.where.at(*path, "replication_address"),
            )
    return None if name is MISSING else node


def parse_sites(loc: Located, ctx: Context) -> list[Site]:
    """`sites:` is a mapping of site name -> {nodes: [...]}, in the order written."""
    ctx.where.record(("sites",), loc.position)
    if not expect_mapping(loc, "sites", ctx):
        return []
    sites: list[Site] = []
    for name, site_loc in loc.value.items():
        path = ("sites", len(sites))
        ctx.where.record(path, loc.key_positions[name])
        f = Fields(site_loc, path, ctx, f"site {name}")
        nodes: list[Node] = []
        for _, item in f.items("nodes"):
            node = parse_node(item, (*path, "nodes", len(nodes)), ctx)
            if node is not None:
                nodes.append(node)
        fence_loc = f.node("fence")
        fence = parse_fence(fence_loc, (*path, "fence"), ctx) if fence_loc is not None else None
        networks = f.str_map("networks")
        f.done()
        sites.append(Site(name, tuple(nodes), fence, MappingProxyType(networks)))
    return sites


def parse_fence(loc: Located, path: Path, ctx: Context) -> FenceAgent | None:
    f = Fields(loc, path, ctx, "fence")
    agent = f.text("agent", required=True)
    options = f.str_map("options")
    timeout = f.duration("timeout", FenceAgent("").timeout)
    f.done()
    if agent is MISSING:
        return None
    if not FENCE_AGENT.match(agent.rsplit("/", 1)[-1]):
        ctx.error(
            "bad-fence-agent",
            f"fence.agent {agent!r} is not a fence-agents program (fence_virsh,"
            " fence_ipmilan, fence_redfish, ...)",
            ctx.where.at(*path, "agent"),
        )
    return FenceAgent(agent, MappingProxyType(options), timeout)


def parse_witness(loc: Located, ctx: Context) -> Witness | None:
    f = Fields(loc, ("witness",), ctx, "witness")
    address = f.text("address", required=True)
    fingerprint = f.text("fingerprint", required=True)
    witness = Witness(address, fingerprint, f.text("cert", None), f.text("key", None))
    f.done()
    if MISSING in (address, fingerprint):
        return None
    try:
        parse_host_port(address)
    except AddressError as exc:
        ctx.error("bad-address", f"witness.address: {exc}", ctx.where.at("witness", "address"))
    try:
        normalise_fingerprint(fingerprint)
    except AddressError as exc:
        ctx.error(
            "bad-fingerprint", f"witness.fingerprint: {exc}", ctx.where.at("witness", "fingerprint")
        )
    return witness


def parse_fencing(loc: Located, ctx: Context) -> Fencing:
    f = Fields(loc, ("fencing",), ctx, "fencing")
    d = Fencing()
    fencing = Fencing(
        watchdog=f.choice("watchdog", WatchdogKind, d.watchdog),
        device=f.text("device", d.device),
        watchdog_timeout=f.duration("watchdog_timeout", d.watchdog_timeout),
        self_fence=f.choice("self_fence", SelfFence, d.self_fence),
        margin=f.duration("margin", d.margin, positive=False),
    )
    f.done()
    return fencing


def parse_agent(loc: Located, ctx: Context) -> AgentSettings:
    f = Fields(loc, ("agent",), ctx, "agent")
    d = AgentSettings()
    agent = AgentSettings(
        failover=f.choice("failover", FailoverMode, d.failover),
        port=f.whole("port", d.port, low=1, high=65535),
        heartbeat=f.duration("heartbeat", d.heartbeat),
        member_timeout=f.duration("member_timeout", d.member_timeout),
        key=f.text("key", None),
        runbook=f.text("runbook", d.runbook),
        escalate_runbook=f.text("escalate_runbook", d.escalate_runbook),
        start_runbook=f.text("start_runbook", d.start_runbook),
        max_restarts=f.whole("max_restarts", d.max_restarts, low=0, high=100),
        failure_window=f.duration("failure_window", d.failure_window),
    )
    f.done()
    return agent


def parse_quorum(loc: Located, ctx: Context) -> QuorumTimings:
    f = Fields(loc, ("quorum",), ctx, "quorum")
    d = QuorumTimings()
    heartbeat = f.duration("heartbeat", d.heartbeat)
    lease = f.duration("lease_timeout", d.lease_timeout)
    switch = f.duration("switch_delay", d.switch_delay, positive=False)
    # Derived, never configured twice (STYLE rule 7): absent means lease + switch delay.
    takeover = f.duration("takeover_wait", lease + switch)
    f.done()
    return QuorumTimings(heartbeat, lease, switch, takeover)


def parse_migration(loc: Located, ctx: Context) -> MigrationPolicy:
    f = Fields(loc, ("migration",), ctx, "migration")
    d = MigrationPolicy()
    policy = MigrationPolicy(
        max_downtime=f.duration("max_downtime", d.max_downtime),
        downtime_ceiling=f.duration("downtime_ceiling", d.downtime_ceiling),
        downtime_steps=f.whole("downtime_steps", d.downtime_steps, low=1, high=100),
        stall_iterations=f.whole("stall_iterations", d.stall_iterations, low=1, high=1000),
        auto_converge=f.flag("auto_converge", d.auto_converge),
        allow_postcopy=f.flag("allow_postcopy", d.allow_postcopy),
        bandwidth_mibps=f.whole("bandwidth_mibps", d.bandwidth_mibps),
        deadline=f.duration("deadline", d.deadline),
    )
    f.done()
    return policy


def parse_hypervisor(loc: Located, ctx: Context) -> Hypervisors:
    f = Fields(loc, ("hypervisor",), ctx, "hypervisor")
    d = Hypervisors()
    hyp = Hypervisors(
        driver=f.one_of("driver", HYPERVISOR_DRIVERS, d.driver),
        state_dir=f.text("state_dir", d.state_dir),
        bandwidth_mibps=f.number("bandwidth_mibps", d.bandwidth_mibps, low=0.001),
        replication=f.one_of("replication", ("sim", "real"), d.replication),
    )
    f.done()
    return hyp


def parse_drill_targets(loc: Located, path: Path, ctx: Context) -> DrillTargets:
    f = Fields(loc, path, ctx, "drill targets")
    targets = DrillTargets(rto=f.duration("rto", None), downtime=f.duration("downtime", None))
    f.done()
    return targets


def parse_drill(loc: Located, path: Path, ctx: Context) -> Drill | None:
    f = Fields(loc, path, ctx, "drill")
    d = Drill("", DrillKind.LIVE, "", "")
    name = f.name()
    kind = f.choice("kind", DrillKind, MISSING)
    schedule = f.text("schedule", required=True)
    target = f.text("target", required=True)
    tz = f.text("tz", d.tz)
    window = f.duration("window", d.window, positive=False)
    deadline = f.duration("starting_deadline", d.starting_deadline)
    targets_loc = f.node("targets")
    targets = (
        DrillTargets() if targets_loc is None
        else parse_drill_targets(targets_loc, (*path, "targets"), ctx)
    )  # fmt: skip
    f.done()
    if MISSING in (name, kind, schedule, target):
        return None
    try:
        parse_cron(schedule)
    except CronError as exc:
        ctx.error("bad-cron", f"drill {name!r}: {exc}", ctx.where.at(*path, "schedule"))
    try:
        zone(tz)
    except CronError as exc:
        ctx.error("bad-timezone", f"drill {name!r}: {exc}", ctx.where.at(*path, "tz"))
    return Drill(name, kind, schedule, target, tz, window, deadline, targets)


def _section(f: Fields, key: str, parse: Callable[[Located, Context], T], default: T) -> T:
    loc = f.node(key)
    return default if loc is None else parse(loc, f.ctx)


def _list(
    f: Fields, key: str, parse: Callable[[Located, Path, Context], Any], ctx: Context
) -> tuple[Any, ...]:
    out: list[Any] = []
    for _, item in f.items(key):
        value = parse(item, (key, len(out)), ctx)
        if value is not None:
            out.append(value)
    return tuple(out)


def parse_cluster(root: Located, ctx: Context) -> Cluster | None:
    """The model (possibly partial: check ctx.reports), or None when the file is not even
    a mapping."""
    if not expect_mapping(root, "the config file", ctx):
        return None
    f = Fields(root, (), ctx, "the cluster")
    name = f.name("cluster")
    primary = f.text("primary_site", required=True)
    sites_loc = f.node("sites", required=True)
    sites = parse_sites(sites_loc, ctx) if sites_loc is not None else []
    if sites_loc is not None and isinstance(sites_loc.value, dict) and len(sites) != 2:
        ctx.error(
            "site-count",
            f"a cluster has exactly two data sites, found {len(sites)}"
            " (the quorum witness is configured under `witness:`)",
            f.key_pos("sites"),
        )
    witness_loc = f.node("witness")
    witness = parse_witness(witness_loc, ctx) if witness_loc is not None else None
    # A missing name is already reported; keep going so every other problem is found too.
    cluster = Cluster(
        name="" if name is MISSING else name,
        sites=cast(tuple[Site, Site], tuple(sites)),
        primary_site="" if primary is MISSING else primary,
        witness=witness,
        volumes=_list(f, "volumes", parse_volume, ctx),
        vms=_list(f, "vms", parse_vm, ctx),
        services=_list(f, "services", parse_service, ctx),
        fencing=_section(f, "fencing", parse_fencing, Fencing()),
        agent=_section(f, "agent", parse_agent, AgentSettings()),
        quorum=_section(f, "quorum", parse_quorum, QuorumTimings()),
        migration=_section(f, "migration", parse_migration, MigrationPolicy()),
        hypervisor=_section(f, "hypervisor", parse_hypervisor, Hypervisors()),
        distance_km=f.number("distance_km", None),
        write_latency_budget=f.duration("write_latency_budget", 0.001),
        drills=_list(f, "drills", parse_drill, ctx),
    )
    f.done()
    return cluster
