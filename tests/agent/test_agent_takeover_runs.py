"""The agent's own runbook runs across more than one loss: a site that took over once
takes over again on the next loss of its peer, and a run under way is cancelled when the
site fences itself (it lost quorum), so it cannot go on holding the run lock that every
later start and takeover waits for. The real engine and journal; FakeClock; the run
cancelled in the second test is on a real thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from drorch.agent.jobs import Job
from drorch.agent.loop import Agent
from drorch.cancel import Cancel
from drorch.decide.agent import Takeover
from drorch.model.loader import parse_cluster_text
from drorch.testing.clock import FakeClock
from drorch.testing.fake_watchdog import fake_linux_watchdog
from drorch.testing.fake_witness import FakeWitness
from drorch.testing.ledger_steps import lines
from tests.agent.test_agent_health import _run_until_taken, _takeover_agents
from tests.agent.test_agent_scenarios import CONFIG, Resources, World, _never_both


@pytest.fixture
def world() -> World:
    clock = FakeClock()
    return World(clock, FakeWitness(clock, lease=10.0, switch_delay=5.0))


def test_a_site_that_took_over_takes_over_again_on_the_next_loss(
    world: World, tmp_path: Path
) -> None:
    agents = _takeover_agents(world, tmp_path, CONFIG)
    _run_until_taken(world, agents, 3)
    world.dead = {"A"}
    world.primary["A"].clear()
    assert _run_until_taken(world, agents, 30) is not None
    world.dead = set()  # A returns; an operator fails back to A (planned), and the
    world.primary["B"].clear()  # failback's take-quorum step moves the lease to A
    world.primary["A"] = {"db"}
    world.witness.cut_off = {"B"}
    for _ in range(120):  # 30 s: membership forms, B's lease runs out, A is granted
        for agent in agents.values():
            agent.cycle()
        world.record()
        world.clock.advance(0.25)
    a = agents["A"].last
    assert a is not None and a.quorum.has_quorum
    world.witness.cut_off = set()
    world.dead = {"A"}  # and A is lost again
    world.primary["A"].clear()
    assert _run_until_taken(world, agents, 40) is not None, "B took over the second time"
    promotes = [x for x in lines(tmp_path / "ledger") if x.startswith("add promote-B-")]
    assert len(promotes) == 2, promotes
    assert promotes[0] != promotes[1], "each takeover at its own witness epoch"
    _never_both(world)


def _b_taking_over(
    world: World, tmp_path: Path, *, promotes: bool
) -> tuple[Agent, list[Job], threading.Event]:
    """Site A lost; B's agent starts its takeover, a run on a real thread that (when it
    `promotes`) makes B primary, then waits on a step that never ends until cancelled."""
    cluster = parse_cluster_text(CONFIG, "c.yaml")[0]
    started: list[Job] = []
    ended = threading.Event()

    def start(t: Takeover, epoch: int) -> Job:
        cancel = Cancel()

        def work() -> tuple[bool, str]:
            if promotes:
                world.primary["B"] = {"db"}
            for _ in range(500):  # bounded: 5 s of real time
                if cancel.reason is not None:
                    ended.set()
                    return False, f"cancelled: {cancel.reason}"
                time.sleep(0.01)
            ended.set()
            return False, "never cancelled"

        job = Job("site-failover", work, world.clock, cancel)
        job.start()
        started.append(job)
        return job

    dog, _ = fake_linux_watchdog(world.clock)
    b = Agent(
        cluster, "b1", clock=world.clock, watchdog=dog,
        members=lambda: world.members("b1"), lease=world.witness.source("B"),
        resources=Resources(world, "B"), start_takeover=start, role_log=tmp_path / "r.jsonl",
    )  # fmt: skip
    world.dead = {"A"}
    world.primary["A"].clear()
    for _ in range(200):  # bounded: 50 s of fake time until the run starts
        b.cycle()
        if started:
            break
        world.clock.advance(0.25)
    return b, started, ended


def test_a_takeover_under_way_is_cancelled_when_the_site_fences_itself(
    world: World, tmp_path: Path
) -> None:
    b, started, ended = _b_taking_over(world, tmp_path, promotes=True)
    assert started, "B started its takeover"
    world.witness.down = True  # the witness goes too: B alone is no majority
    acted: list[str] = []
    for _ in range(100):  # bounded: 25 s of fake time, past the lease
        report = b.cycle()
        acted += report.acted
        if world.primary["B"] == set():
            break
        world.clock.advance(0.25)
    assert world.primary["B"] == set(), "B fenced itself"
    assert "cancelled site-failover" in acted
    assert ended.wait(5.0)
    started[0].join(5.0)
    state = started[0].state
    assert state.ok is False and state.message.startswith("cancelled: site B fenced itself")


def test_a_run_is_cancelled_when_the_site_loses_quorum_with_nothing_to_fence(
    world: World, tmp_path: Path
) -> None:
    """The watchdog fired first (it stopped the guests and demoted the volumes), or the
    run had not promoted anything yet: no self-fence is decided, and the run must still
    stop (lab torture run 16, twice)."""
    b, started, _ended = _b_taking_over(world, tmp_path, promotes=False)
    assert started, "B started its takeover"
    world.witness.down = True
    acted: list[str] = []
    quorum_lost = False
    for _ in range(100):  # bounded: 25 s of fake time, past the lease
        report = b.cycle()
        acted += report.acted
        quorum_lost = not report.quorum.has_quorum
        if quorum_lost:
            assert not report.self_fence.fence, "nothing ran here: nothing to fence"
            break
        world.clock.advance(0.25)
    assert quorum_lost
    assert "cancelled site-failover" in acted
    started[0].join(5.0)
    state = started[0].state
    assert state.ok is False and state.message.startswith("cancelled: site B lost quorum"), state
