"""A replicator that hangs does not stall the agent loop. Real time, a real soft watchdog
process (its supervisor measures each feed's slack), the real pyrepl driver and its
control client against a control socket that answers and then accepts and never answers
(a hung `repl serve`), and a real `drorch repl serve` SIGSTOPped; one agent holding a
majority.

Before the call budget (drorch.agent.bounded) the loop waited up to the control client's
120 s for the status: no feed, so the watchdog fired on a site with quorum and guests.
Now: a hung copy last seen *secondary* is reported unobserved and the loop keeps feeding;
a hung copy last seen *primary* is fed for its recovery budget (member_timeout) and then
escalated as the rules say: the feed stops and the watchdog fences the site."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from drorch.agent.bounded import Bounded, observe_budget
from drorch.agent.loop import Agent
from drorch.agent.resources import EnvResources
from drorch.clock import SystemClock
from drorch.decide.agent import SelfFenceDecision
from drorch.environment import Environment
from drorch.fencing.soft import SoftWatchdog
from drorch.model.loader import parse_cluster_text
from drorch.model.types import Cluster
from drorch.replication.pyrepl.driver import PyreplReplicator
from tests.ports import free_port_block

CONFIG = """
cluster: c
primary_site: A
sites:
  A: {nodes: [{name: a1}, {name: a2}]}
  B: {nodes: [{name: b1}]}
volumes:
  - name: db
    pyrepl: {region_size: 64KiB}
    driver: pyrepl
    size: 1MiB
    mode: sync
    port: 7800
    paths: {a1: /tmp/x-a1, b1: /tmp/x-b1}
fencing: {watchdog: soft, watchdog_timeout: 1500ms, margin: 500ms}
quorum: {heartbeat: 300ms, lease_timeout: 3s, switch_delay: 500ms}
agent: {failover: manual, heartbeat: 250ms, member_timeout: 2s}
"""
HEARTBEAT, TIMEOUT = 0.25, 1.5


class HungDaemon:
    """A control socket: answers `status` with `role` until `hang` is set, then accepts
    every connection and never answers (what a SIGSTOPped daemon's kernel backlog does)."""

    def __init__(self, path: Path, role: str) -> None:
        self.role, self.hang = role, threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(64)
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.hang.is_set():
                self.held.append(conn)  # accepted, never answered
                continue
            with conn:
                conn.makefile("rb").readline()
                peer = "primary" if self.role == "secondary" else "secondary"
                st = {"name": "db", "role": self.role, "disk": "UpToDate",
                      "connection": "Connected", "mode": "sync", "peer_role": peer}  # fmt: skip
                conn.sendall(json.dumps({"ok": True, "result": st}).encode() + b"\n")

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


class _NoFence(EnvResources):
    def self_fence(self, decision: SelfFenceDecision) -> list[str]:
        raise AssertionError(f"self-fenced: {decision.reason}")


def _run(
    role: str, seconds: float, real: bool = False
) -> tuple[Agent, SoftWatchdog, list[tuple[float, bool, str]]]:
    """`real`: a real `drorch repl serve` (it starts as secondary), SIGSTOPped."""
    d = Path(tempfile.mkdtemp(prefix="hung-", dir="/tmp"))  # short: AF_UNIX path limit
    text = CONFIG.replace("/tmp/x-", f"{d}/").replace("7800", str(free_port_block(2)))
    cluster: Cluster = parse_cluster_text(text, "c.yaml")[0]
    env = Environment(base_dir=d, state_dir=d)
    node = cluster.node("a1")[1]
    if real:
        rep = PyreplReplicator(cluster.volumes[0], node, env)
        rep.up()  # waits until it answers
        daemon: HungDaemon | _Stopped = _Stopped(int(rep.status().extra["pid"]))
    else:
        rep = PyreplReplicator(cluster.volumes[0], node, env, control=d / "db.ctl")
        daemon = HungDaemon(d / "db.ctl", role)
    env.replicators[("db", "a1")] = rep
    bounded = Bounded(observe_budget(cluster))
    watchdog = SoftWatchdog()
    agent = Agent(
        cluster,
        "a1",
        clock=SystemClock(),
        watchdog=watchdog,
        members=lambda: ("a1", "a2", "b1"),  # a majority: quorum without a witness
        lease=None,
        resources=_NoFence(cluster, "a1", env, bounded),
        bounded=bounded,
    )
    cycles: list[tuple[float, bool, str]] = []
    try:
        for _ in range(4):  # answered: its role is known
            agent.cycle()
            time.sleep(HEARTBEAT)
        daemon.hang.set()
        end = time.monotonic() + seconds
        for _ in range(200):  # bounded
            if time.monotonic() >= end:
                break
            r = agent.cycle()
            cycles.append((time.monotonic(), r.feed.feed, r.feed.reason))
            time.sleep(HEARTBEAT)
    finally:
        daemon.close()
        if not real:
            os.unlink(d / "db.ctl")
    return agent, watchdog, cycles


class _Stopped:
    """A real daemon, SIGSTOPped on `hang`; killed by its PID on close."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.hang = self

    def set(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def close(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.kill(self.pid, signal.SIGCONT)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _periods(cycles: list[tuple[float, bool, str]]) -> list[float]:
    return [b[0] - a[0] for a, b in itertools.pairwise(cycles)]


@pytest.mark.parametrize(
    "real", [False, True], ids=["never-answering-socket", "sigstopped-repl-serve"]
)
def test_a_hung_secondary_replicator_keeps_the_loop_and_the_watchdog_healthy(real: bool) -> None:
    agent, _, cycles = _run("secondary", 3.0, real)
    try:
        budget = observe_budget(agent.cluster)
        periods = _periods(cycles)
        what = "sigstopped repl serve" if real else "never-answering socket"
        print(f"\nhung secondary ({what}): budget {budget:g}s, {len(cycles)} cycles,"
              f" period max {max(periods):.3f}s, feeds {agent.feeds.as_dict()}")  # fmt: skip
        assert max(periods) < HEARTBEAT + budget + 0.25  # the cadence holds (loaded CI)
        assert all(fed for _, fed, _ in cycles), cycles
        assert agent.feeds.late_feeds == 0 and agent.feeds.min_slack is not None
        assert agent.feeds.min_slack > TIMEOUT - (HEARTBEAT + budget) - 0.3
        last = agent.last
        assert last is not None and "replicator db" in last.unobserved
        assert "no answer within the loop's budget" in last.unobserved["replicator db"]
        assert last.primary_here == ()  # last seen secondary: not counted as writing
    finally:
        agent.stop(clean=True)


def test_a_hung_primary_replicator_is_fed_for_its_budget_then_escalated() -> None:
    agent, watchdog, cycles = _run("primary", 4.0)
    try:
        hung_at = cycles[0][0]
        fed = [t - hung_at for t, f, _ in cycles if f]
        starved = [(t - hung_at, why) for t, f, why in cycles if not f]
        periods = _periods(cycles)
        print(f"\nhung primary: last feed {max(fed):.2f}s after the hang, first refusal"
              f" {starved[0][0]:.2f}s: {starved[0][1]};"
              f" period max {max(periods):.3f}s")  # fmt: skip
        member_timeout = agent.cluster.agent.member_timeout
        assert max(fed) >= member_timeout - 0.5, "fed within its recovery budget"
        assert starved and starved[0][0] <= member_timeout + 0.6
        assert "volume db unobserved for" in starved[0][1], starved[0][1]
        assert max(periods) < HEARTBEAT + observe_budget(agent.cluster) + 0.25
        assert watchdog.wait_fired(TIMEOUT + 1.0) == 2, "the watchdog fences the site"
    finally:
        agent.stop(clean=False)
