"""A restart in place runs on its own thread: the agent loop keeps feeding the watchdog
at its cadence while a slow restart runs. Real time, a real soft watchdog process (its
own supervisor measures the slack), one agent holding a majority. The same restart run
on the loop (the old way) eats the slack: that is what the control case shows."""

from __future__ import annotations

import time

import pytest

from drorch.agent.health import LocalHealth, Watched
from drorch.agent.jobs import Job
from drorch.agent.loop import Agent
from drorch.clock import SystemClock
from drorch.decide.agent import SelfFenceDecision
from drorch.decide.recovery import RecoveryPolicy
from drorch.fencing.soft import SoftWatchdog
from drorch.model.loader import parse_cluster_text
from drorch.monitor.base import CheckStatus
from drorch.testing.fake_monitor import ScriptedMonitor

CONFIG = """
cluster: c
primary_site: A
sites:
  A: {nodes: [{name: a1}, {name: a2}]}
  B: {nodes: [{name: b1}]}
volumes: []
fencing: {watchdog: soft, watchdog_timeout: 1500ms, margin: 500ms}
quorum: {heartbeat: 300ms, lease_timeout: 3s, switch_delay: 500ms}
agent: {failover: manual, heartbeat: 250ms, member_timeout: 1s}
"""
HEARTBEAT, TIMEOUT, RESTART_TAKES = 0.25, 1.5, 1.0


class _Here:
    def primary_here(self) -> tuple[str, ...]:
        return ("vm db",)

    def self_fence(self, decision: SelfFenceDecision) -> list[str]:
        raise AssertionError(f"self-fenced: {decision.reason}")


def _run(start_job: object) -> tuple[Agent, list[str]]:
    cluster = parse_cluster_text(CONFIG, "c.yaml")[0]
    clock = SystemClock()
    restarted: list[str] = []

    def slow_restart(resource: str, limit: float) -> str:
        time.sleep(RESTART_TAKES)  # a guest that takes a second to come back
        restarted.append(resource)
        return f"{resource} restarted"

    failed, ok = CheckStatus.FAILED, CheckStatus.OK
    health = LocalHealth(
        [Watched("vm db", ScriptedMonitor("db-alive", [ok, ok, failed, ok]), 0.25)],
        clock=clock,
        policy=RecoveryPolicy(max_restarts=2, failure_window=60.0),
        groups=lambda r: (r,),
        restart=slow_restart,
        escalate=lambda g, r: pytest.fail(f"escalated {g}"),
        start_job=start_job,  # type: ignore[arg-type]
    )
    watchdog = SoftWatchdog()
    agent = Agent(
        cluster,
        "a1",
        clock=clock,
        watchdog=watchdog,
        members=lambda: ("a1", "a2", "b1"),  # a majority: quorum without a witness
        lease=None,
        resources=_Here(),
        health=health,
        local=lambda: frozenset({"vm db"}),
    )
    try:
        end = time.monotonic() + 3.0
        for _ in range(100):  # bounded: 3 s of 250 ms cycles
            if time.monotonic() >= end:
                break
            agent.cycle()
            time.sleep(HEARTBEAT)
        for _ in range(40):  # bounded: let the restart thread finish
            if restarted:
                break
            time.sleep(0.05)
    finally:
        agent.stop(clean=True)
    return agent, restarted


def test_the_watchdog_keeps_its_slack_while_a_slow_restart_runs() -> None:
    agent, restarted = _run(Job.start)
    feeds = agent.feeds
    print(f"\nslow restart ({RESTART_TAKES:g}s) on its own thread: {feeds.feeds} feeds,"
          f" min slack {feeds.min_slack:.3f}s of {TIMEOUT:g}s,"
          f" late {feeds.late_feeds}")  # fmt: skip
    assert restarted == ["vm db"]
    assert feeds.late_feeds == 0
    assert feeds.min_slack is not None
    # one cycle plus scheduling noise on a loaded 2-core machine, never the restart's 1 s
    assert feeds.min_slack >= TIMEOUT - HEARTBEAT - 0.45, feeds.as_dict()
    assert feeds.feeds >= 8


def test_control_the_same_restart_on_the_loop_eats_the_slack() -> None:
    """What the thread prevents: the loop blocked for the whole restart."""
    agent, restarted = _run(lambda job, message: job.run_here(message))
    assert restarted == ["vm db"]
    assert agent.feeds.min_slack is not None
    assert agent.feeds.min_slack < TIMEOUT - RESTART_TAKES + 0.05, agent.feeds.as_dict()


def test_a_restart_hung_past_its_budget_escalates_the_group() -> None:
    """A restart that does not come back within its budget counts as failed: the group
    is moved (a second restart cannot start beside the first)."""
    from drorch.testing.clock import FakeClock

    clock = FakeClock()
    escalated: list[tuple[str, ...]] = []
    release = []

    def hang(resource: str, limit: float) -> str:
        for _ in range(400):  # bounded: until the test lets go (≤ 20 s)
            if release:
                break
            time.sleep(0.05)
        return "late"

    def escalate(group: tuple[str, ...], reason: str) -> Job:
        escalated.append(group)
        job = Job("escalate", lambda: (True, "moved"), clock)
        job.run_here()
        return job

    health = LocalHealth(
        [Watched("vm db", ScriptedMonitor("db-alive", [CheckStatus.FAILED]), 1.0)],
        clock=clock,
        policy=RecoveryPolicy(max_restarts=2, failure_window=60.0),
        groups=lambda r: ("service proxy", "vm db"),
        restart=hang,
        escalate=escalate,
    )
    try:
        lines: list[str] = []
        views = []
        for _ in range(20):  # 10 s of fake time
            views.append(health.poll(frozenset({"vm db"})))
            lines += health.act()
            clock.advance(0.5)
        assert lines[0].startswith("vm db failed; restart 1 of 2 in place")
        assert lines[0].endswith("restarting on its own thread (budget 3s)")
        assert escalated == [("service proxy", "vm db")]
        hung = next(line for line in lines if "escalated group" in line)
        assert "vm db: restart in place still running after 3.5s (budget 3s)" in hung
        assert all(v.ok for v in views), "a restart within budget, then a move: no fence"
    finally:
        release.append(True)
