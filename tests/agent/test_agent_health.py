"""The agent's monitors and their recovery (restart in place, then escalate the group),
its automatic takeover carried out by the real runbook engine (ledger step family,
journaled), and positive fencing shortening the wait only when confirmed. FakeClock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import drorch.testing.ledger_steps  # noqa: F401  (registers ledger.*)
from drorch.agent.health import LocalHealth, Watched
from drorch.agent.jobs import Job
from drorch.agent.loop import Agent
from drorch.agent.resources import resource_groups
from drorch.cancel import Cancel
from drorch.cli.agent_runbooks import agent_runbooks
from drorch.decide.agent import Takeover, TakeoverAction
from drorch.decide.recovery import RecoveryPolicy
from drorch.model.loader import parse_cluster_text
from drorch.monitor.base import CheckResult, CheckStatus, Monitor
from drorch.runbook.journal import Journal
from drorch.testing.clock import FakeClock
from drorch.testing.fake_monitor import ScriptedMonitor
from drorch.testing.fake_watchdog import fake_linux_watchdog
from drorch.testing.fake_witness import FakeWitness
from drorch.testing.ledger_steps import lines
from tests.agent.test_agent_scenarios import CONFIG, Resources, World, _never_both

OK, FAILED = CheckStatus.OK, CheckStatus.FAILED


def _health(
    clock: FakeClock, script: list[CheckStatus], level: int = 1
) -> tuple[LocalHealth, list[str], list[tuple[tuple[str, ...], str]]]:
    restarts: list[str] = []
    escalated: list[tuple[tuple[str, ...], str]] = []

    def escalate(group: tuple[str, ...], reason: str) -> Job:
        escalated.append((group, reason))
        job = Job("escalate", lambda: (True, "moved"), clock)
        job.run_here()
        return job

    mon = ScriptedMonitor("db-alive", script, level=level)
    mon.timeout = 1.0
    health = LocalHealth(
        [Watched("vm db", mon, interval=1.0)],
        clock=clock,
        policy=RecoveryPolicy(max_restarts=2, failure_window=60.0),
        groups=lambda r: ("service proxy", "vm db"),
        restart=lambda r, limit: restarts.append(r) or f"{r} restarted",  # type: ignore[func-returns-value]
        escalate=escalate,
        start_job=Job.run_here,  # the FakeClock does not move while it runs
    )
    return health, restarts, escalated


def _poll_for(health: LocalHealth, clock: FakeClock, seconds: int) -> list[str]:
    acted = []
    for _ in range(seconds * 4):  # bounded
        view = health.poll(frozenset({"vm db"}))
        assert view.ok, view.reason
        acted += health.act()
        clock.advance(0.25)
    return acted


def test_three_failures_restart_twice_then_escalate_the_group() -> None:
    clock = FakeClock()
    health, restarts, escalated = _health(clock, [OK, FAILED])
    acted = _poll_for(health, clock, 20)
    assert restarts == ["vm db", "vm db"]
    assert escalated and escalated[0][0] == ("service proxy", "vm db")
    assert acted[0].startswith("vm db failed; restart 1 of 2 in place within 60s")
    assert acted[1].startswith("vm db failed; restart 2 of 2 in place within 60s")
    assert acted[2].startswith(
        "vm db failed 3 times within 60s (max_restarts 2): escalate to moving its group"
    )
    assert acted[2].endswith("escalated group service proxy, vm db")
    assert len(acted) == 3, "an escalated resource is not restarted again"


def test_a_recovered_resource_is_not_escalated() -> None:
    clock = FakeClock()
    health, restarts, escalated = _health(clock, [OK, FAILED, OK])
    _poll_for(health, clock, 20)
    assert restarts == ["vm db"] and escalated == []
    assert health.poll(frozenset({"vm db"})).reason == "all monitors of local resources pass"


def test_failed_escalation_of_a_level1_monitor_starves_the_watchdog() -> None:
    clock = FakeClock()
    health, _, _ = _health(clock, [FAILED])
    health.escalate = lambda g, r: _failed_job(clock)
    ok_seen = []
    for _ in range(80):  # bounded: 20 s
        view = health.poll(frozenset({"vm db"}))
        ok_seen.append(view.ok)
        health.act()
        clock.advance(0.25)
    assert ok_seen[0] and not ok_seen[-1]
    assert view.reason == (
        "vm db: db-alive: scripted failed (escalated: no runbook to run for escalate)"
    )


def test_a_level2_failure_never_starves_the_watchdog() -> None:
    clock = FakeClock()
    health, _, _ = _health(clock, [FAILED], level=2)
    health.escalate = lambda g, r: _failed_job(clock)
    for _ in range(80):  # bounded
        assert health.poll(frozenset({"vm db"})).ok
        health.act()
        clock.advance(0.25)


def test_resources_not_here_are_not_judged() -> None:
    clock = FakeClock()
    health, restarts, _ = _health(clock, [FAILED])
    view = health.poll(frozenset())
    assert view.ok and view.monitors["db-alive"]["state"] == "not here"
    assert health.act() == [] and restarts == []


def _failed_job(clock: FakeClock) -> Job:
    job = Job("escalate", lambda: (False, "no runbook to run for escalate"), clock)
    job.run_here()
    return job


def test_groups_follow_dependencies() -> None:
    cluster = parse_cluster_text(
        CONFIG.replace("volumes: []", "") + "vms: [{name: db, domain: d}, {name: web, domain: w}]\n"
        "services: [{name: proxy, start: 'true', stop: 'true', depends_on: [db]}]\n",
        "c.yaml",
    )[0]
    groups = resource_groups(cluster)
    assert groups["vm db"] == ("service proxy", "vm db")
    assert groups["service proxy"] == ("service proxy", "vm db")
    assert groups["vm web"] == ("vm web",)


SITE_FAILOVER = """\
name: site-failover
params:
  to: {type: str}
  epoch: {type: int, default: 0}
steps:
  - id: promote
    action: ledger.add
    with: {ledger: LEDGER, token: "promote-${params.to}-${params.epoch}"}
"""


def _takeover_agents(
    world: World, tmp: Path, config: str, fence: Callable[[], Job] | None = None
) -> dict[str, Agent]:
    cluster = parse_cluster_text(config, "c.yaml")[0]
    rb = tmp / "site-failover.yaml"
    if not rb.exists():
        rb.write_text(SITE_FAILOVER.replace("LEDGER", str(tmp / "ledger")))
    cfg = tmp / "c.yaml"
    cfg.write_text(config)
    agents = {}
    for node, site in (("a1", "A"), ("b1", "B")):
        dog, _ = fake_linux_watchdog(world.clock)
        runbooks = agent_runbooks(cluster, cfg, node=node, state_dir=tmp / "state")

        def start(t: Takeover, epoch: int, site: str = site, runbooks: Any = runbooks) -> Job:
            def work() -> tuple[bool, str]:
                ok, msg = runbooks.run(rb, {"to": site, "from": "?", "epoch": epoch}, Cancel())
                if ok:
                    world.primary[site] = {"db"}
                return ok, msg

            job = Job("site-failover", work, world.clock)
            job.run_here()  # the FakeClock does not move while the engine runs
            return job

        agents[site] = Agent(
            cluster,
            node,
            clock=world.clock,
            watchdog=dog,
            members=lambda node=node: world.members(node),
            lease=world.witness.source(site),
            resources=Resources(world, site),
            start_takeover=start,
            start_fence=fence if site == "B" else None,
            role_log=tmp / "roles.jsonl",
        )
    return agents


def _run_until_taken(world: World, agents: dict[str, Agent], seconds: int) -> float | None:
    lost = world.clock.monotonic()
    for _ in range(seconds * 4):  # bounded
        for site, agent in agents.items():
            if site not in world.dead:
                agent.cycle()
            world.record()
        if world.primary["B"]:
            return world.clock.monotonic() - lost
        world.clock.advance(0.25)
    return None


@pytest.fixture
def world() -> World:
    clock = FakeClock()
    return World(clock, FakeWitness(clock, lease=10.0, switch_delay=5.0))


def test_automatic_takeover_runs_the_runbook_through_the_engine_with_the_witness_epoch(
    world: World, tmp_path: Path
) -> None:
    agents = _takeover_agents(world, tmp_path, CONFIG)
    _run_until_taken(world, agents, 3)
    world.dead = {"A"}
    world.primary["A"].clear()
    taken = _run_until_taken(world, agents, 30)
    assert taken is not None and taken >= 15.0
    b = agents["B"].last
    assert b is not None
    epoch = b.quorum.epoch
    assert epoch >= 2, "B's grant is a new epoch at the witness"
    assert lines(tmp_path / "ledger") == [f"add promote-B-{epoch}"]
    runs = Journal(tmp_path / "state").runs()
    assert [(r.runbook, r.status, r.user) for r in runs] == [
        ("site-failover", "succeeded", "agent b1")
    ]
    assert "site-failover runbook started at epoch" in " ".join(b.acted)
    agents["B"].cycle()
    b = agents["B"].last
    assert b is not None and b.takeover.reason == "site B already runs the cluster"
    _never_both(world)


def test_a_failed_runbook_is_not_retried_on_its_own(world: World, tmp_path: Path) -> None:
    flaky = SITE_FAILOVER.replace("ledger.add", "ledger.flaky").replace(
        "with: {", "with: {failures: 5, "
    )
    (tmp_path / "site-failover.yaml").write_text(flaky.replace("LEDGER", str(tmp_path / "ledger")))
    agents = _takeover_agents(world, tmp_path, CONFIG)
    _run_until_taken(world, agents, 3)
    world.dead = {"A"}
    world.primary["A"].clear()
    assert _run_until_taken(world, agents, 30) is None
    b = agents["B"].last
    assert b is not None and b.takeover.action is TakeoverAction.REFUSED
    assert b.takeover.reason.startswith("the site-failover runbook failed (run ")
    assert lines(tmp_path / "ledger").count("try promote-B-" + str(b.quorum.epoch)) == 1
    world.dead = set()  # A comes back; when it is lost again, that loss is handled afresh
    world.primary["A"] = {"db"}
    _run_until_taken(world, agents, 5)
    world.dead = {"A"}
    world.primary["A"].clear()
    assert _run_until_taken(world, agents, 40) is None
    tries = [line for line in lines(tmp_path / "ledger") if line.startswith("try promote-B-")]
    assert len(tries) == 2, tries


LONG_WAIT = CONFIG.replace("switch_delay: 5s}", "switch_delay: 5s, takeover_wait: 40s}")


@pytest.mark.parametrize(
    ("confirmed", "earliest", "latest"),
    [(True, 14.0, 20.0), (False, 40.0, 42.0)],
    ids=["confirmed-off-skips-the-rest", "unconfirmed-waits-in-full"],
)
def test_positive_fence(
    world: World, tmp_path: Path, confirmed: bool, earliest: float, latest: float
) -> None:
    fenced: list[float] = []

    def fence() -> Job:
        fenced.append(world.clock.monotonic())
        job = Job("fence", lambda: (confirmed, "fence_test: done"), world.clock)
        job.run_here()
        return job

    agents = _takeover_agents(world, tmp_path, LONG_WAIT, fence)
    _run_until_taken(world, agents, 3)
    assert fenced == [], "nobody fences a member"
    world.dead = {"A"}
    world.primary["A"].clear()
    taken = _run_until_taken(world, agents, 45)
    assert taken is not None and earliest <= taken <= latest, taken
    assert len(fenced) == 1, "one fence per loss"
    b = agents["B"].last
    assert b is not None and b.jobs["fence"]["ok"] is confirmed  # type: ignore[index]


def test_lab_sim_yaml_level1_monitors_pass_under_the_agent_on_the_simulator(
    tmp_path: Path,
) -> None:
    """lab/sim.yaml's `web-alive` (type domain) asks the simulated hypervisor: at A,
    where web runs, the agent's health passes; nothing is restarted or escalated (a
    process monitor looking for qemu-system-x86_64 failed here every time)."""
    from drorch.agent.monitors_build import build_health
    from drorch.agent.resources import EnvResources
    from tests.runbook.steps_lab import SimLab

    lab = SimLab(tmp_path)

    def no_escalation(group: tuple[str, ...], reason: str) -> Job:
        raise AssertionError(f"escalated {group}: {reason}")

    res = EnvResources(lab.cluster, "a1", lab.env)
    health = build_health(lab.cluster, "a1", lab.env, res, tmp_path, lab.clock, no_escalation)
    try:
        local = res.local_resources()
        assert "vm web" in local
        for _ in range(30):  # 30 s of agent cycles on the fake clock
            view = health.poll(local)
            assert health.act() == []
            lab.clock.advance(1.0)
        web = view.monitors["web-alive"]
        assert (web["state"], web["reason"]) == ("ok", "domain drorch-web is running")
        assert view.monitors["proxy-port"]["reason"] == "simulated: the service is placed here"
        assert view.monitors["db-heartbeat"]["reason"] == "simulated: domain drorch-db is running"
        assert view.ok
        lab.env.hypervisor("A").destroy("drorch-web")  # and it does see a guest go
        lab.clock.advance(10.0)
        assert health.poll(local).monitors["web-alive"]["reason"] == "domain drorch-web is shutoff"
    finally:
        health.close()


class _Switch(Monitor):
    """A level-1 monitor whose answer the test sets."""

    def __init__(self, name: str) -> None:
        super().__init__(name, 1, timeout=1.0)
        self.status = OK

    def check(self) -> CheckResult:
        return CheckResult(self.status, f"switched {self.status.value}")


def test_a_group_is_escalated_once_and_its_members_wait_for_it() -> None:
    """db fails past its budget: its group (db, proxy) is escalated. proxy, which depends
    on db, fails while the group is being moved: it is not restarted in place, starts no
    second escalation, and does not starve the watchdog (its recovery is the group's)."""
    clock = FakeClock()
    restarts: list[str] = []
    runs: list[Job] = []
    moved = threading.Event()

    def escalate(group: tuple[str, ...], reason: str) -> Job:
        def work() -> tuple[bool, str]:
            assert moved.wait(10)
            return True, "group moved to B"

        job = Job("escalate", work, clock)
        job.start(f"moving {group}")  # on its own thread, as the agent runs it
        runs.append(job)
        return job

    db, proxy = _Switch("db-alive"), _Switch("proxy-alive")
    group = ("service proxy", "vm db")
    health = LocalHealth(
        [Watched("vm db", db, interval=1.0), Watched("service proxy", proxy, interval=1.0)],
        clock=clock,
        policy=RecoveryPolicy(max_restarts=2, failure_window=60.0),
        groups=lambda r: group,
        restart=lambda r, limit: restarts.append(r) or f"{r} restarted",  # type: ignore[func-returns-value]
        escalate=escalate,
        start_job=Job.run_here,
    )
    here = frozenset(group)

    def cycles(n: int) -> None:
        for _ in range(n):  # bounded
            view = health.poll(here)
            assert view.ok, f"starved the watchdog: {view.reason}"
            health.act()
            clock.advance(0.25)

    try:
        db.status = FAILED
        cycles(80)  # 20 s: two restarts in place, then the group escalates
        assert len(runs) == 1 and restarts == ["vm db", "vm db"]
        proxy.status = FAILED  # db is being moved: the proxy in front of it fails too
        cycles(40)
        assert len(runs) == 1, "the group was escalated twice"
        assert restarts == ["vm db", "vm db"], "a member was restarted while its group moved"
        states = health.poll(here).monitors
        assert states["proxy-alive"]["recovery"] == (
            "escalating with its group (vm db): runbook running"
        )
        assert states["db-alive"]["recovery"] == "escalating: runbook running"
    finally:
        moved.set()
        for job in runs:
            job.join(10)
    states = health.poll(here).monitors
    assert states["proxy-alive"]["recovery"] == (
        "escalated with its group (vm db): group moved to B"
    )
    db.status = proxy.status = OK  # both pass again (e.g. after a failback)
    clock.advance(1.0)
    view = health.poll(here)
    assert view.reason == "all monitors of local resources pass"
    assert {m["recovery"] for m in view.monitors.values()} == {"ok"}
