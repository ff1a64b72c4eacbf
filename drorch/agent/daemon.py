"""`drorch agent run`: build one node's agent from the cluster file and run its loop.

Refuses to start when it could not keep a node safe: no membership certificates, or a
watchdog that cannot be armed. The soft watchdog's self-fence is `drorch agent
self-fence` for this node, so a dead or frozen agent still stops the node writing."""

from __future__ import annotations

import logging
import shlex
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drorch.agent.bounded import Bounded, observe_budget
from drorch.agent.control import AgentControl
from drorch.agent.jobs import Job, Runbooks, find_runbook
from drorch.agent.lease import KeeperLease
from drorch.agent.loop import Agent
from drorch.agent.membership import Membership, Peer
from drorch.agent.monitors_build import build_health
from drorch.agent.rejoin import Rejoin
from drorch.agent.resources import EnvResources
from drorch.agent.restart import ClusterStart
from drorch.cancel import Cancel
from drorch.clock import Clock, SystemClock
from drorch.decide.agent import Takeover
from drorch.envbuild import build_environment_report
from drorch.fencing.devices import watchdog_for
from drorch.fencing.fence_agent import fence_off
from drorch.fencing.soft import SelfFenceActions
from drorch.model.types import Cluster, FailoverMode
from drorch.quorum.client import QuorumConnection, QuorumError
from drorch.statedir import default_state_dir

log = logging.getLogger("drorch.agent")


class AgentStartError(Exception):
    """The agent refuses to start; the message says why."""


class WitnessTimingMismatch(QuorumError):
    """The witness's welcome timings differ from the cluster file's (never retried into
    a lease: the keeper keeps failing, and says why)."""


def _host(cluster: Cluster, node: str) -> str:
    """A node's own `replication_address` first (a local node with one has a host of its
    own: the lab's sites are network namespaces on one machine), else loopback for a
    local node, else its SSH host."""
    _, n = cluster.node(node)
    if n.replication_address:
        return n.replication_address
    if n.is_local:
        return "127.0.0.1"
    return n.address.rpartition("@")[2].partition(":")[0]


def agent_paths(state: Path, cluster: Cluster, node: str) -> dict[str, Path]:
    return {
        "control": state / f"agent-{cluster.name}-{node}.sock",
        "maintenance": state / f"maintenance-{cluster.name}",
        "roles": state / f"roles-{cluster.name}-{node}.jsonl",
        "softdog": state / f"softdog-{cluster.name}-{node}.log",
    }


def membership_for(
    cluster: Cluster, node: str, base: Path, clock: Clock, port: int | None
) -> Membership:
    a = cluster.agent
    _, me = cluster.node(node)
    if me.agent_cert is None:
        raise AgentStartError(
            f"node {node} has no agent_cert: agents heartbeat each other over mutual TLS"
            " with pinned certificates (drorch refuses to guess who its peers are)"
        )
    # agent.key, else the key beside the certificate (name.crt -> name.key)
    key = base / (a.key or str(Path(me.agent_cert).with_suffix(".key")))
    peers = []
    for site in cluster.sites:
        for n in site.nodes:
            if n.name == node:
                continue
            if n.agent_cert is None:
                raise AgentStartError(f"node {n.name} has no agent_cert to pin")
            peers.append(
                Peer(
                    n.name,
                    site.name,
                    _host(cluster, n.name),
                    _port(cluster, n.name),
                    base / n.agent_cert,
                )
            )
    listen = (_host(cluster, node), port if port is not None else _port(cluster, node))
    return Membership(
        cluster=cluster.name,
        me=node,
        listen=listen,
        cert=base / me.agent_cert,
        key=key,
        peers=peers,
        heartbeat=a.heartbeat,
        member_timeout=a.member_timeout,
        clock=clock,
    )


def _port(cluster: Cluster, node: str) -> int:
    """All nodes listen on agent.port; nodes that share a host (`local`, the lab) take
    consecutive ports in the order the file lists them."""
    names = [n.name for s in cluster.sites for n in s.nodes]
    n = cluster.node(node)[1]
    shares_host = n.is_local and not n.replication_address
    return cluster.agent.port + (names.index(node) if shares_host else 0)


def checked_witness(
    cluster: Cluster, node: str, base: Path, clock: Clock
) -> Callable[[], QuorumConnection]:
    """A connect function for the lease keeper that refuses a witness whose `welcome`
    timings disagree with the cluster file (the keeper then never gains the lease)."""
    from drorch.model.timing import witness_timing_problems

    w = cluster.witness
    assert w is not None
    site = cluster.node(node)[0].name
    site_cert, site_key = w.cert_for(site), w.key_for(site)  # `{site}` in the paths
    if site_cert is None or site_key is None:
        raise AgentStartError("the witness config names no client cert/key for this site")
    cert, key = base / site_cert, base / site_key

    def connect() -> QuorumConnection:
        conn = QuorumConnection(
            w.address, w.fingerprint, cert, key, cluster.name, site, node, clock=clock
        )
        welcome = conn.connect()
        problems = witness_timing_problems(cluster, welcome.heartbeat_ms, welcome.lease_ms)
        if problems:
            conn.close()
            raise WitnessTimingMismatch("; ".join(problems))
        return conn

    return connect


def _runbook(cluster: Cluster, base: Path, runbooks: Runbooks | None) -> Path | None:
    """The takeover runbook, loaded and validated at start: an automatic agent refuses to
    start without one it could run."""
    escalate = find_runbook(cluster.agent.escalate_runbook, base)
    if escalate is None:
        log.warning(
            "agent.escalate_runbook %s is not found: a resource whose level-1 monitor keeps"
            " failing after max_restarts cannot be moved, so the watchdog will fence the site",
            cluster.agent.escalate_runbook,
        )
    elif runbooks is not None and (problems := runbooks.check(escalate)):
        raise AgentStartError(f"agent.escalate_runbook {escalate} does not validate:\n{problems}")
    path = find_runbook(cluster.agent.runbook, base)
    if cluster.agent.failover is not FailoverMode.AUTOMATIC:
        return path
    if runbooks is None:
        raise AgentStartError("agent.failover is automatic but no runbook engine was given")
    if path is None:
        raise AgentStartError(
            f"agent.failover is automatic but agent.runbook {cluster.agent.runbook} is not"
            f" found (beside the config, in {Path.cwd()}, or in drorch's runbooks/)"
        )
    problems = runbooks.check(path)
    if problems:
        raise AgentStartError(f"agent.runbook {path} does not validate:\n{problems}")
    start = find_runbook(cluster.agent.start_runbook, base)
    if start is None:
        raise AgentStartError(
            f"agent.failover is automatic but agent.start_runbook {cluster.agent.start_runbook}"
            " is not found: a cluster that runs nowhere once both sites are back could not start"
        )
    if problems := runbooks.check(start):
        raise AgentStartError(f"agent.start_runbook {start} does not validate:\n{problems}")
    return path


def self_fence_argv(config: Path, node: str) -> list[str]:
    """The soft watchdog's self-fence command for this node (`--yes`: it asks nobody)."""
    return [sys.executable, "-m", "drorch", "agent", "self-fence",
            "-c", str(config.resolve()), "--node", node, "--yes"]  # fmt: skip


def run(
    config: Path,
    cluster: Cluster,
    node: str,
    stop: threading.Event,
    state: Path | None = None,
    runbooks: Runbooks | None = None,
) -> int:
    clock = SystemClock()
    base = config.resolve().parent
    state = state or default_state_dir()
    state.mkdir(parents=True, exist_ok=True)
    paths = agent_paths(state, cluster, node)
    env, problems = build_environment_report(cluster, base, clock)
    env.config_file = config.resolve()  # pyrepl daemons' fence-peer hook reads it
    for p in problems:
        log.warning("driver unavailable: %s", p)
    site = cluster.node(node)[0].name
    peer = cluster.other_site(site).name
    takeover_runbook = _runbook(cluster, base, runbooks)

    def runbook_job(name: str, path: Path | None, params: dict[str, object]) -> Job:
        cancel = Cancel()

        def work() -> tuple[bool, str]:
            if path is None or runbooks is None:
                return False, f"no runbook to run for {name}"
            return runbooks.run(path, params, cancel)

        job = Job(name, work, clock, cancel)
        job.start(f"{name}: {path}")
        return job

    def start_takeover(t: Takeover, epoch: int) -> Job:
        return runbook_job(
            "site-failover",
            takeover_runbook,
            {"to": site, "lost": peer, "from": peer, "epoch": epoch, "reason": t.reason},
        )

    def start_cluster(to: str) -> Job:
        path = find_runbook(cluster.agent.start_runbook, base)
        return runbook_job("cluster-start", path, {"to": to})

    def escalate(group: tuple[str, ...], reason: str) -> Job:
        path = find_runbook(cluster.agent.escalate_runbook, base)
        names = [g.partition(" ")[2] for g in group]
        return runbook_job(
            "escalate", path, {"to": peer, "from": site, "group": names, "reason": reason}
        )

    fence_spec = cluster.site(peer).fence
    start_fence = None
    if fence_spec is not None:
        spec = fence_spec

        def start_fence() -> Job:
            def work() -> tuple[bool, str]:
                r = fence_off(spec, peer)
                return r.confirmed, f"{r.reason} ({r.seconds:g}s)"

            job = Job("fence", work, clock)
            job.start(f"fencing site {peer} with {spec.agent}")
            return job

    membership = membership_for(cluster, node, base, clock, None)
    fence_cmd = " ".join(shlex.quote(a) for a in self_fence_argv(config, node))
    watchdog = watchdog_for(
        cluster.fencing,
        SelfFenceActions(
            commands=(fence_cmd,),
            log=str(paths["softdog"]),
            extra_env={"DRORCH_STATE_DIR": str(state)},
        ),
    )
    lease: KeeperLease | None = None
    keeper = None
    if cluster.witness is not None:
        from drorch.quorum.keeper import LeaseKeeper

        lease = KeeperLease()
        connect = checked_witness(cluster, node, base, clock)
        try:
            connect().close()  # disagreeing timings refuse the start; a down witness does not
        except WitnessTimingMismatch as e:
            raise AgentStartError(f"the witness disagrees with {config}: {e}") from e
        except QuorumError as e:
            log.warning("the witness cannot be asked at start (%s); the keeper keeps trying", e)
        keeper = LeaseKeeper(
            connect,
            lease.on_gained,
            lease.on_lost,
            clock=clock,
            nodes=lambda: len(membership.table.members()),
        )
        lease.keeper = keeper
    bounded = Bounded(observe_budget(cluster))  # every call a cycle makes to observe
    log.info("agent %s: observation budget %gs per cycle", node, bounded.budget)
    busy = runbooks.busy if runbooks is not None else lambda: None
    resources = EnvResources(cluster, node, env, bounded, busy)
    health = build_health(cluster, node, env, resources, base, clock, escalate, bounded)
    rejoin = Rejoin(
        lambda: {
            v.name: env.replicators[(v.name, node)]
            for v in resources.volumes
            if (v.name, node) in env.replicators
        },
        site=site,
        peer=peer,
        clock=clock,
        retry=cluster.agent.member_timeout,
        bounded=bounded,
    )
    agent = Agent(
        cluster,
        node,
        clock=clock,
        watchdog=watchdog,
        members=membership.table.members,
        lease=lease,
        resources=resources,
        maintenance=lambda: paths["maintenance"].exists(),
        role_log=paths["roles"],
        health=health,
        local=resources.local_resources,
        start_takeover=start_takeover if runbooks is not None else None,
        start_fence=start_fence,
        rejoin=rejoin,
        bounded=bounded,
        start=ClusterStart(cluster, site, clock, start_cluster, busy)
        if runbooks is not None
        else None,
    )

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "status":
            last = agent.last
            return {
                "node": node,
                "site": agent.site,
                **(last.as_dict() if last else {"starting": True}),
            }
        if op == "maintenance":
            if request.get("on"):
                paths["maintenance"].write_text("on\n")
            else:
                paths["maintenance"].unlink(missing_ok=True)
            return {"maintenance": paths["maintenance"].exists()}
        return {"error": f"unknown operation {op!r}"}

    control = AgentControl(paths["control"], handle)
    membership.start()
    if keeper is not None:
        keeper.start()
    log.info("agent %s at site %s: running (control %s)", node, agent.site, paths["control"])
    try:
        while not stop.is_set():
            report = agent.cycle()
            for line in report.acted:
                log.info("%s", line)
            stop.wait(cluster.agent.heartbeat)
    finally:
        agent.stop(clean=True)
        health.close()
        control.close()
        membership.stop()
        if keeper is not None:
            keeper.stop()
        env.close()
    return 0
