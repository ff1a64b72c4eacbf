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

from drorch.agent.control import AgentControl
from drorch.agent.lease import KeeperLease
from drorch.agent.loop import Agent
from drorch.agent.membership import Membership, Peer
from drorch.agent.resources import EnvResources
from drorch.clock import Clock, SystemClock
from drorch.envbuild import build_environment_report
from drorch.fencing.devices import watchdog_for
from drorch.fencing.soft import SelfFenceActions
from drorch.model.types import Cluster
from drorch.quorum.client import QuorumConnection, QuorumError
from drorch.statedir import default_state_dir

log = logging.getLogger("drorch.agent")


class AgentStartError(Exception):
    """The agent refuses to start; the message says why."""


class WitnessTimingMismatch(QuorumError):
    """The witness's welcome timings differ from the cluster file's (never retried into
    a lease: the keeper keeps failing, and says why)."""


def _host(cluster: Cluster, node: str) -> str:
    _, n = cluster.node(node)
    if n.is_local:
        return "127.0.0.1"
    return n.replication_address or n.address.rpartition("@")[2].partition(":")[0]


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
    return cluster.agent.port + (names.index(node) if cluster.node(node)[1].is_local else 0)


def checked_witness(
    cluster: Cluster, node: str, base: Path, clock: Clock
) -> Callable[[], QuorumConnection]:
    """A connect function for the lease keeper that refuses a witness whose `welcome`
    timings disagree with the cluster file (the keeper then never gains the lease)."""
    from drorch.model.timing import witness_timing_problems

    w = cluster.witness
    assert w is not None
    if w.cert is None or w.key is None:
        raise AgentStartError("the witness config names no client cert/key for this site")
    site = cluster.node(node)[0].name
    cert, key = base / w.cert, base / w.key

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


def run(
    config: Path, cluster: Cluster, node: str, stop: threading.Event, state: Path | None = None
) -> int:
    clock = SystemClock()
    base = config.resolve().parent
    state = state or default_state_dir()
    state.mkdir(parents=True, exist_ok=True)
    paths = agent_paths(state, cluster, node)
    env, problems = build_environment_report(cluster, base, clock)
    for p in problems:
        log.warning("driver unavailable: %s", p)
    membership = membership_for(cluster, node, base, clock, None)
    fence_cmd = " ".join(
        shlex.quote(a)
        for a in (
            sys.executable,
            "-m",
            "drorch",
            "agent",
            "self-fence",
            "-c",
            str(config.resolve()),
            "--node",
            node,
        )
    )
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
    agent = Agent(
        cluster,
        node,
        clock=clock,
        watchdog=watchdog,
        members=membership.table.members,
        lease=lease,
        resources=EnvResources(cluster, node, env),
        maintenance=lambda: paths["maintenance"].exists(),
        role_log=paths["roles"],
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
        control.close()
        membership.stop()
        if keeper is not None:
            keeper.stop()
        env.close()
    return 0
