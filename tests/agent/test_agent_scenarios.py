"""The agent's loop against a witness in memory (the real grant state machine), fake
watchdog devices and fake resources, all on one FakeClock: the split-brain stories,
cycle by cycle, with the role log checked at every instant."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from drorch.agent.loop import Agent
from drorch.agent.membership import MemberTable
from drorch.decide.agent import SelfFenceDecision, Takeover, TakeoverAction
from drorch.model.loader import parse_cluster_text
from drorch.model.types import Cluster, FailoverMode
from drorch.testing.clock import FakeClock
from drorch.testing.fake_watchdog import FakeWatchdogKernel, fake_linux_watchdog
from drorch.testing.fake_witness import FakeWitness

CONFIG = """
cluster: c
primary_site: A
sites:
  A: {nodes: [{name: a1}]}
  B: {nodes: [{name: b1}]}
volumes: []
fencing: {watchdog: device, watchdog_timeout: 5s, margin: 1s}
quorum: {heartbeat: 1s, lease_timeout: 10s, switch_delay: 5s}
agent: {failover: automatic}
"""


@dataclass
class World:
    clock: FakeClock
    witness: FakeWitness
    primary: dict[str, set[str]] = field(default_factory=lambda: {"A": {"db"}, "B": set()})
    partitioned: bool = False
    dead: set[str] = field(default_factory=set)
    history: list[tuple[float, frozenset[str]]] = field(default_factory=list)
    failovers: list[str] = field(default_factory=list)  # sites that ran site-failover

    def members(self, node: str) -> tuple[str, ...]:
        if self.partitioned:
            return (node,)
        alive = {"a1": "A", "b1": "B"}
        return tuple(sorted(n for n, s in alive.items() if s not in self.dead or n == node))

    def record(self) -> None:
        both = frozenset(s for s, res in self.primary.items() if res)
        self.history.append((self.clock.monotonic(), both))


class Resources:
    def __init__(self, world: World, site: str) -> None:
        self.w, self.site = world, site

    def primary_here(self) -> tuple[str, ...]:
        return tuple(sorted(self.w.primary[self.site]))

    def self_fence(self, decision: SelfFenceDecision) -> list[str]:
        gone = sorted(self.w.primary[self.site])
        self.w.primary[self.site].clear()
        return [f"self-fenced {', '.join(gone)}"]


def _cluster(**agent: str) -> Cluster:
    c, _ = parse_cluster_text(CONFIG, "c.yaml")
    if agent:
        c = replace(c, agent=replace(c.agent, failover=FailoverMode(agent["failover"])))
    return c


def _agents(
    world: World, cluster: Cluster, tmp: Path
) -> tuple[dict[str, Agent], dict[str, FakeWatchdogKernel]]:
    agents, kernels = {}, {}
    for node, site in (("a1", "A"), ("b1", "B")):
        dog, kernel = fake_linux_watchdog(world.clock)

        def failover(t: Takeover, epoch: int, site: str = site) -> bool:
            world.failovers.append(site)
            world.primary[site] = {"db"}
            return True

        agents[site] = Agent(
            cluster,
            node,
            clock=world.clock,
            watchdog=dog,
            members=lambda node=node: world.members(node),
            lease=world.witness.source(site),
            resources=Resources(world, site),
            run_failover=failover,
            role_log=tmp / "roles.jsonl",
        )
        kernels[site] = kernel
    return agents, kernels


def _run(
    world: World, agents: dict[str, Agent], seconds: int, skip: frozenset[str] = frozenset()
) -> None:
    for _ in range(seconds * 4):  # bounded: 4 cycles a second of fake time
        for site, agent in agents.items():
            if site not in skip and site not in world.dead:
                agent.cycle()
            world.record()
        world.clock.advance(0.25)


@pytest.fixture
def world() -> World:
    clock = FakeClock()
    return World(clock, FakeWitness(clock, lease=10.0, switch_delay=5.0))


def _never_both(world: World) -> None:
    both = [t for t, sites in world.history if len(sites) > 1]
    assert not both, f"both sites primary at {both[:3]}"


def test_partition_witness_reachable_from_b_only(world: World, tmp_path: Path) -> None:
    agents, kernels = _agents(world, _cluster(), tmp_path)
    _run(world, agents, 3)  # A gains the lease, both healthy
    assert agents["A"].last is not None and agents["A"].last.quorum.has_quorum
    world.partitioned = True
    world.witness.cut_off = {"A"}
    cut = world.clock.monotonic()
    fenced_at = taken_at = None
    for _ in range(30 * 4):  # bounded: 30 s of fake time
        for site in ("A", "B"):
            agents[site].cycle()
            world.record()
        if fenced_at is None and not world.primary["A"]:
            fenced_at = world.clock.monotonic() - cut
        if taken_at is None and world.primary["B"]:
            taken_at = world.clock.monotonic() - cut
        world.clock.advance(0.25)
    _never_both(world)
    assert fenced_at is not None and taken_at is not None
    assert fenced_at < 10.0, "A must stop writing when its lease runs out"
    assert taken_at >= 15.0, f"B took over after {taken_at}s, before takeover_wait"
    assert fenced_at < taken_at
    b = agents["B"].last
    assert b is not None and b.takeover.action is TakeoverAction.NONE
    assert b.takeover.reason == "site B already runs the cluster"
    assert not kernels["B"].fired
    roles = (tmp_path / "roles.jsonl").read_text().splitlines()
    assert len(roles) >= 3


def test_a_site_that_took_over_and_runs_nothing_now_is_not_the_active_site(
    world: World, tmp_path: Path
) -> None:
    """B took over, then its resources were stopped (a rollback, an operator, a fence):
    B must not go on claiming it runs the cluster, which refused every later takeover
    and cluster start there (found by `lab torture`, run 2)."""
    agents, _ = _agents(world, _cluster(), tmp_path)
    _run(world, agents, 3)
    world.partitioned = True
    world.witness.cut_off = {"A"}
    _run(world, agents, 30)
    b = agents["B"].last
    assert b is not None and b.takeover.reason == "site B already runs the cluster"
    assert world.failovers == ["B"]
    world.primary["B"].clear()  # nothing primary at B any more, and A is still lost
    _run(world, agents, 20)
    # B is not the active site now: A is still lost, so B takes over again (before the
    # fix it sat with nothing running, "already running the cluster", for good)
    assert world.failovers == ["B", "B"], world.failovers
    assert world.primary["B"] == {"db"}


def test_agent_killed_its_watchdog_fires(world: World, tmp_path: Path) -> None:
    agents, kernels = _agents(world, _cluster(), tmp_path)
    _run(world, agents, 3)
    assert agents["A"].armed
    _run(world, agents, 4, skip=frozenset({"A"}))  # A's loop is dead (kill -9 / SIGSTOP): no feeds
    assert not kernels["A"].fired
    _run(world, agents, 2, skip=frozenset({"A"}))
    assert kernels["A"].fired, "the watchdog did not fire 6 s after the last feed"


def test_witness_down_both_healthy_nothing_moves(world: World, tmp_path: Path) -> None:
    agents, kernels = _agents(world, _cluster(), tmp_path)
    _run(world, agents, 3)
    world.witness.down = True
    _run(world, agents, 30)
    assert world.primary == {"A": {"db"}, "B": set()}
    assert not kernels["A"].fired and not kernels["B"].fired
    a = agents["A"].last
    assert a is not None and a.quorum.reason == "majority: 2 of 2 nodes are members"


def test_witness_down_and_site_a_killed_nothing_promotes(world: World, tmp_path: Path) -> None:
    agents, _ = _agents(world, _cluster(), tmp_path)
    _run(world, agents, 3)
    world.witness.down = True
    world.dead = {"A"}
    world.primary["A"].clear()  # A's power is gone
    _run(world, agents, 60)
    assert world.primary["B"] == set()
    b = agents["B"].last
    assert b is not None and b.takeover.action is TakeoverAction.NONE
    assert b.takeover.reason.startswith("site A lost 59.8s ago, but site B has no quorum:")
    assert "the witness is unreachable: no tiebreaker" in b.takeover.reason


def test_old_site_returns_nothing_moves_back(world: World, tmp_path: Path) -> None:
    agents, _ = _agents(world, _cluster(), tmp_path)
    _run(world, agents, 3)
    world.dead = {"A"}
    world.primary["A"].clear()
    _run(world, agents, 25)
    assert world.primary["B"] == {"db"}
    world.dead = set()  # A is back, as a secondary: its agent restarts
    _run(world, agents, 30)
    assert world.primary == {"A": set(), "B": {"db"}}
    _never_both(world)
    a = agents["A"].last
    assert a is not None and a.takeover.reason == "site B is a member: nothing to take over"


def test_manual_mode_reports_ready(world: World, tmp_path: Path) -> None:
    agents, _ = _agents(world, _cluster(failover="manual"), tmp_path)
    _run(world, agents, 3)
    world.dead = {"A"}
    world.primary["A"].clear()
    _run(world, agents, 25)
    assert world.primary["B"] == set()
    b = agents["B"].last
    assert b is not None and b.takeover.action is TakeoverAction.READY
    assert b.takeover.reason.startswith("ready to take over, because site A lost")
    assert b.takeover.reason.endswith("run `drorch failover --to B`")


def test_maintenance_disarms_and_acts_on_nothing(world: World, tmp_path: Path) -> None:
    agents, kernels = _agents(world, _cluster(), tmp_path)
    _run(world, agents, 3)
    for a in agents.values():
        a.maintenance = lambda: True
    world.dead = {"A"}
    _run(world, agents, 30, skip=frozenset({"A"}))
    assert not agents["B"].armed and not kernels["B"].running
    assert world.primary["B"] == set()


def test_an_outdated_survivor_refuses_to_take_over(world: World, tmp_path: Path) -> None:
    """The witness records B's copy as outdated (A wrote alone): B may not promote."""
    agents, _ = _agents(world, _cluster(), tmp_path)
    _run(world, agents, 3)
    world.witness.outdated["B"] = ("dbdata",)
    world.dead = {"A"}
    world.primary["A"].clear()
    _run(world, agents, 25)
    assert world.primary["B"] == set()
    b = agents["B"].last
    assert b is not None and b.takeover.action is TakeoverAction.REFUSED
    assert b.takeover.reason.startswith("the witness marks dbdata at B outdated")


def test_the_active_site_does_not_take_over_an_idle_lost_peer(world: World, tmp_path: Path) -> None:
    agents, _ = _agents(world, _cluster(), tmp_path)
    _run(world, agents, 3)
    world.dead = {"B"}  # the idle recovery site is lost
    _run(world, agents, 30)
    assert world.primary == {"A": {"db"}, "B": set()}
    assert world.failovers == [], "the active site ran a takeover of an idle peer"
    a = agents["A"].last
    assert a is not None and a.takeover.action is TakeoverAction.NONE
    assert a.takeover.reason == "site A already runs the cluster"


def test_manual_failover_done_by_an_operator_makes_the_survivor_active(
    world: World, tmp_path: Path
) -> None:
    agents, _ = _agents(world, _cluster(failover="manual"), tmp_path)
    _run(world, agents, 3)
    world.dead = {"A"}
    world.primary["A"].clear()
    _run(world, agents, 25)
    b = agents["B"].last
    assert b is not None and b.takeover.action is TakeoverAction.READY
    world.primary["B"] = {"db"}  # `drorch failover --to B` ran
    _run(world, agents, 2)
    b = agents["B"].last
    assert b is not None and b.takeover.reason == "site B already runs the cluster"
    assert world.failovers == []


class HandoverResources(Resources):
    """A live move's target: its primary entries write only while the peer cannot (the
    replication link's word, `EnvResources.handover`)."""

    @property
    def handover(self) -> dict[str, str]:
        return {
            p: f"{p}: second primary of a connected live hand-over"
            for p in self.w.primary[self.site]
        }


def test_a_hand_over_target_that_hears_its_peer_runs_on_and_one_that_does_not_fences(
    world: World, tmp_path: Path
) -> None:
    """The failback's move back to A: the guest and the second primary arrive at A while
    B holds the lease. Fed and not fenced while A's agent hears B's (the lab's failback
    self-fence was A not hearing B, through a WAN proxy that swallowed B's beats); once
    A stops hearing B, the same state is a primary without quorum: A fences itself."""
    world.primary = {"A": set(), "B": {"db"}}
    agents, kernels = _agents(world, _cluster(), tmp_path)
    agents["A"].resources = HandoverResources(world, "A")
    agents = {"B": agents["B"], "A": agents["A"]}  # B asks the witness first: B holds it
    _run(world, agents, 15)
    lease = agents["B"].lease_source.lease()  # type: ignore[union-attr]
    assert lease.held and lease.holder == "B"
    world.primary["A"] = {"db"}  # promoted beside B, the guest arrived
    _run(world, agents, 10)
    report = agents["A"].last
    assert report is not None and not report.self_fence.fence, report.self_fence.reason
    assert world.primary["A"] == {"db"} and report.feed.feed, report.feed.reason
    # the witness naming B is the hand-over, not a self-audit problem (it is one for a
    # primary the replication link does not cover)
    assert report.watchdog["armed"] and not report.acted, report.acted
    assert not kernels["A"].fired

    heard = world.members
    world.members = lambda node: ("a1",) if node == "a1" else heard(node)  # type: ignore[method-assign]
    _run(world, agents, 3)
    assert world.primary["A"] == set(), "A ran primary without quorum, hearing nobody"
    assert world.primary["B"] == {"db"}


def test_a_one_way_membership_link_is_no_majority(world: World, tmp_path: Path) -> None:
    """B stops hearing A while A still hears B, and A is cut off from the witness. With
    membership counted one way, A kept "majority: 2 of 2" and ran on while B, alone,
    took the lease and took over: both primary for 90 s of this story. Membership is
    mutual (drorch.agent.membership: each beat says whom its sender hears), so A is
    alone, cannot renew, and its watchdog fences it before B takes over."""
    tables = {n: MemberTable(n, member_timeout=2.0, clock=world.clock) for n in ("a1", "b1")}
    cut: set[tuple[str, str]] = set()  # (from, to): beats that do not arrive
    seq = {"a1": 0, "b1": 0}

    def beat() -> None:
        for src, dst in (("a1", "b1"), ("b1", "a1")):
            seq[src] += 1
            if (src, dst) not in cut:
                tables[dst].heard(src, seq[src], dst in tables[src].heard_from())

    agents, kernels = _agents(world, _cluster(), tmp_path)
    for site, node in (("A", "a1"), ("B", "b1")):
        agents[site].members = tables[node].members
    for _ in range(60 * 4):  # bounded: 60 s of fake time, 4 cycles a second
        if world.clock.monotonic() - 1000 >= 15 and not cut:
            cut.add(("a1", "b1"))
            world.witness.cut_off = {"A"}
        beat()
        for site, agent in agents.items():
            if kernels[site].fired:
                world.primary[site].clear()  # the watchdog reset the node: it writes no more
            else:
                agent.cycle()
        world.record()
        world.clock.advance(0.25)
    _never_both(world)
    assert world.primary == {"A": set(), "B": {"db"}} and world.failovers == ["B"]
    assert kernels["A"].fired and not kernels["B"].fired
