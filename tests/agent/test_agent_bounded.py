"""The loop's call budget (drorch.agent.bounded): derived from the timings and checked
at load; a call past it is unobserved, is not started again beside itself, and its late
answer is used."""

from __future__ import annotations

import threading
import time

import pytest

from drorch.agent.bounded import Bounded, Unobserved, observe_budget, unobserved_health
from drorch.model.loader import parse_cluster_text
from drorch.model.reports import ConfigError

CONFIG = """
cluster: c
primary_site: A
sites:
  A: {nodes: [{name: a1}]}
  B: {nodes: [{name: b1}]}
volumes: []
fencing: {watchdog: soft, watchdog_timeout: WATCHDOG, margin: 500ms}
quorum: {heartbeat: 300ms, lease_timeout: 3s, switch_delay: 500ms}
agent: {failover: manual, heartbeat: 250ms, member_timeout: 1s}
"""


def test_the_budget_is_derived_from_the_heartbeat_and_the_watchdog_slack() -> None:
    c = parse_cluster_text(CONFIG.replace("WATCHDOG", "1500ms"), "c.yaml")[0]
    assert observe_budget(c) == 0.125  # half the heartbeat
    c = parse_cluster_text(CONFIG.replace("WATCHDOG", "400ms"), "c.yaml")[0]
    assert observe_budget(c) == pytest.approx(0.075)  # half the slack past a heartbeat
    with pytest.raises(ConfigError, match="watchdog-below-agent-heartbeat"):
        parse_cluster_text(CONFIG.replace("WATCHDOG", "250ms"), "c.yaml")


def test_a_hung_call_is_unobserved_started_once_and_its_late_answer_used() -> None:
    b = Bounded(0.05)
    release = threading.Event()
    started: list[int] = []

    def status() -> str:
        started.append(1)
        assert release.wait(5)
        return "secondary"

    for _ in range(3):
        b.begin()
        with pytest.raises(Unobserved, match=r"no answer within the loop's budget of 0\.05s"):
            b.call("replicator db", status)
        assert "replicator db" in b.unobserved
    assert len(started) == 1, "not asked again beside itself"
    assert (b.hung_for("replicator db") or 0) > 0.04
    release.set()
    b.begin()
    for _ in range(100):  # bounded: the thread hands its answer over
        try:
            assert b.call("replicator db", status) == "secondary"
            break
        except Unobserved:  # a pending call is not waited for again: the next cycle
            time.sleep(0.01)
            b.begin()
    assert b.unobserved == {}, b.unobserved
    assert b.hung_for("replicator db") is None, (b.since, b._pending, started)
    with pytest.raises(ZeroDivisionError):  # an error is the caller's, as without a budget
        b.call("x", lambda: 1 / 0)


def test_unobserved_primaries_fail_health_only_past_their_budget() -> None:
    assert unobserved_health(True, "fine", {}, 2.0) == (True, "fine")
    ok, why = unobserved_health(True, "fine", {"volume db": 1.0}, 2.0)
    assert ok and "volume db unobserved for 1.0s of its 2s budget" in why
    ok, why = unobserved_health(True, "fine", {"volume db": 2.5}, 2.0)
    assert not ok and why == "volume db unobserved for 2.5s (budget 2s)"
