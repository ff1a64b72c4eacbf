"""A cluster left running nowhere is started again by the agents (drorch.agent.restart):
the partition heals after site A fenced itself and before B could take over. On one
FakeClock with the real grant state machine (honouring want:true/false as the keeper
sends it), scripted replicas that follow the world, and the role log checked at every
instant: exactly one site starts it, the configured primary site, after takeover_wait."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from drorch.agent.jobs import Job
from drorch.agent.loop import Agent
from drorch.agent.rejoin import Rejoin
from drorch.agent.restart import ClusterStart
from drorch.decide.agent import TakeoverAction
from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationStatus,
    Replicator,
    Role,
    VerifyResult,
)
from drorch.testing.clock import FakeClock
from drorch.testing.fake_watchdog import fake_linux_watchdog
from drorch.testing.fake_witness import FakeWitness
from tests.agent.test_agent_scenarios import Resources, World, _cluster, _never_both


class WorldReplica(Replicator):
    """The `db` volume at `site` as the world says: primary where db runs, connected to
    its peer unless partitioned (then Connecting, the peer unknown)."""

    def __init__(self, world: World, site: str) -> None:
        self.w, self.site, self.name = world, site, "db"
        self.peer = "B" if site == "A" else "A"

    def _role(self, site: str) -> Role:
        return Role.PRIMARY if self.w.primary[site] else Role.SECONDARY

    def status(self) -> ReplicationStatus:
        if self.w.partitioned:
            return ReplicationStatus(
                "db", self._role(self.site), DiskState.UP_TO_DATE, ConnState.CONNECTING, "sync"
            )
        return ReplicationStatus(
            "db", self._role(self.site), DiskState.UP_TO_DATE, ConnState.CONNECTED, "sync",
            peer_disk=DiskState.UP_TO_DATE, peer_role=self._role(self.peer),
        )  # fmt: skip

    def up(self) -> None: ...
    def down(self) -> None: ...
    def demote(self) -> None: ...
    def connect(self) -> None: ...
    def disconnect(self) -> None: ...
    def resolve_discard_local(self) -> None: ...

    def promote(
        self, epoch: int | None = None, *, force: bool = False, accept_data_loss: bool = False
    ) -> None:
        raise AssertionError("only the cluster-start runbook promotes here")

    def verify(self) -> VerifyResult:
        return VerifyResult(0, (), 65536)


def _agents(world: World, tmp: Path, failover: str = "automatic") -> dict[str, Agent]:
    cluster = _cluster(failover=failover)
    cluster = replace(cluster, quorum=replace(cluster.quorum, takeover_wait=15.0))
    agents = {}
    for node, site in (("a1", "A"), ("b1", "B")):
        dog, _ = fake_linux_watchdog(world.clock)
        rep = WorldReplica(world, site)

        def start(to: str, site: str = site) -> Job:
            def work() -> tuple[bool, str]:
                # what runbooks/cluster-start.yaml does: take the lease, promote, start
                d = world.witness.book.heartbeat("c", to, True, world.clock.monotonic())
                if not d.granted:
                    return False, f"quorum-held-elsewhere: {d.holder}"
                world.failovers.append(f"start {to}")
                world.primary[to] = {"db"}
                return True, "started"

            job = Job("cluster-start", work, world.clock)
            job.run_here()
            return job

        agents[site] = Agent(
            cluster,
            node,
            clock=world.clock,
            watchdog=dog,
            members=lambda node=node: world.members(node),
            lease=world.witness.source(site),
            resources=Resources(world, site),
            run_failover=lambda t, e: False,  # a takeover must not happen in these stories
            role_log=tmp / "roles.jsonl",
            rejoin=Rejoin(
                lambda rep=rep: {"db": rep},
                site=site,
                peer="B" if site == "A" else "A",
                clock=world.clock,
                retry=1.0,
                start_job=Job.run_here,
            ),
            start=ClusterStart(cluster, site, world.clock, start),
        )
    return agents


def _world() -> World:
    clock = FakeClock()
    return World(clock, FakeWitness(clock, lease=10.0, switch_delay=5.0, honour_want=True))


def _step(world: World, agents: dict[str, Agent], seconds: float) -> None:
    for _ in range(int(seconds * 4)):  # bounded: 4 cycles a second of fake time
        for agent in agents.values():
            agent.cycle()
            world.record()
        world.clock.advance(0.25)


def _fence_a_then_heal(world: World, agents: dict[str, Agent]) -> float:
    _step(world, agents, 3)  # A runs db and holds the lease
    world.partitioned = True
    world.witness.cut_off = {"A"}
    _step(world, agents, 11)  # A's lease runs out: it fences itself; B still waits
    assert not world.primary["A"] and not world.primary["B"]
    world.partitioned = False
    world.witness.cut_off = set()
    return world.clock.monotonic()


def test_the_primary_site_starts_it_after_takeover_wait_and_only_it(tmp_path: Path) -> None:
    world = _world()
    agents = _agents(world, tmp_path)
    healed = _fence_a_then_heal(world, agents)
    started = None
    for _ in range(40 * 4):  # bounded: 40 s of fake time
        _step(world, agents, 0.25)
        if started is None and world.primary["A"]:
            started = world.clock.monotonic() - healed
    _never_both(world)
    assert world.failovers == ["start A"], world.failovers
    assert started is not None and 15.0 <= started < 17.0, started
    a, b = agents["A"].last, agents["B"].last
    assert a is not None and b is not None
    running = {
        "action": "none",
        "reason": "the cluster runs (or may run) somewhere",
        "wait_left": 0,
    }
    assert a.start == running
    assert a.jobs["cluster-start"]["ok"] is True
    assert b.quorum.has_quorum and not world.primary["B"]
    roles = [line for line in (tmp_path / "roles.jsonl").read_text().splitlines() if '"A"' in line]
    assert roles, "A's restart is in the role log"


def test_the_other_site_starts_it_when_the_primary_site_does_not(tmp_path: Path) -> None:
    world = _world()
    agents = _agents(world, tmp_path)
    healed = _fence_a_then_heal(world, agents)
    # A's agent is back (membership) but does nothing: its cycles are skipped
    started = None
    for _ in range(40 * 4):  # bounded
        agents["B"].cycle()
        world.record()
        world.clock.advance(0.25)
        if started is None and world.primary["B"]:
            started = world.clock.monotonic() - healed
    _never_both(world)
    assert world.failovers == ["start B"]
    assert started is not None and 30.0 <= started < 32.0, started


def test_manual_mode_only_reports_ready(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="drorch.agent")
    world = _world()
    agents = _agents(world, tmp_path, failover="manual")
    _fence_a_then_heal(world, agents)
    _step(world, agents, 40)
    assert world.failovers == [] and not world.primary["A"] and not world.primary["B"]
    a = agents["A"].last
    assert a is not None
    assert a.start["action"] == TakeoverAction.READY.value
    # every change of the decision while the cluster runs nowhere is logged, once
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cluster start:")]
    assert any(m.startswith("cluster start: wait: the cluster runs nowhere") for m in said), said
    assert sum(m.startswith("cluster start: ready:") for m in said) == 2, said  # A and B


def test_maintenance_keeps_it_stopped(tmp_path: Path) -> None:
    world = _world()
    agents = _agents(world, tmp_path)
    _fence_a_then_heal(world, agents)
    for agent in agents.values():
        agent.maintenance = lambda: True
    _step(world, agents, 40)
    assert world.failovers == []
    a = agents["A"].last
    assert a is not None
    assert a.start["reason"] == "maintenance mode: the cluster stays stopped"
