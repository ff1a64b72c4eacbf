"""The simulated effect of a plan (drorch.decide.effect): each step's effect on the
snapshot as a table, and the way back planned from the effect of the way over."""

from __future__ import annotations

import dataclasses

import pytest

from drorch.decide.actions import Action
from drorch.decide.effect import EFFECTS, NO_EFFECT, apply_plan, apply_step
from drorch.decide.plan import plan_failover, plan_migration
from drorch.decide.snapshot import Snapshot, active_site
from drorch.decide.steps import Step
from drorch.model.loader import parse_cluster_text
from tests.decide.conftest import CLUSTER_YAML, healthy_at_a, replica


def synced() -> Snapshot:
    """healthy_at_a with webdata replicated synchronously: web moves live."""
    text = CLUSTER_YAML.replace("driver: drbd, mode: async", "driver: drbd, mode: sync")
    cluster = parse_cluster_text(text, "shop.yaml")[0]
    return dataclasses.replace(healthy_at_a(), cluster=cluster)


def test_every_action_has_an_effect_or_is_declared_without_one() -> None:
    assert set(EFFECTS) | NO_EFFECT == set(Action)
    assert not set(EFFECTS) & NO_EFFECT


STEP_EFFECTS = [
    (Step(Action.SHUTDOWN_VM, "db", "r", site="A", params={"domain": "db-vm", "before": ()}),
     "db-vm at A: running -> shutoff", {"vm": ("db-vm", "A", "shutoff")}),
    (Step(Action.DEFINE_VM, "db", "r", site="B",
          params={"domain": "db-vm", "xml_source": "saved", "from_site": "A"}),
     "db-vm at B: undefined -> shutoff", {"vm": ("db-vm", "B", "shutoff")}),
    (Step(Action.START_VM, "db", "r", site="B",
          params={"domain": "db-vm", "volumes": ("dbdata",), "after": ()}),
     "db-vm at B: undefined -> running", {"vm": ("db-vm", "B", "running")}),
    (Step(Action.MIGRATE_LIVE, "web", "r", site="B",
          params={"domain": "web", "from_site": "A", "max_downtime": 0.3,
                  "volumes": ("webdata",)}),
     "web at B: undefined -> running; web at A: running -> undefined",
     {"vm": ("web", "A", "undefined")}),
    (Step(Action.DEMOTE, "dbdata", "r", site="A", node="a1"),
     "dbdata at A: role primary -> secondary", {"role": ("dbdata", "A", "secondary")}),
    (Step(Action.PROMOTE, "dbdata", "r", site="B", node="b1",
          params={"epoch": 5, "second_primary": False, "disk": "UpToDate"}),
     "dbdata at B: role secondary -> primary, epoch 4 -> 5 (cluster epoch 5)",
     {"role": ("dbdata", "B", "primary"), "epoch": 5}),
    (Step(Action.CONFIRM_FENCED, "A", "r", site="A", params={"confirmed": False}),
     "A: fenced; dbdata at A: role primary -> unknown; webdata at A: role primary -> unknown;"
     " db-vm at A: running -> crashed; web at A: running -> crashed", {"fenced": "A"}),
    (Step(Action.WAIT_TAKEOVER, "A", "r", site="A",
          params={"seconds": 15.0, "lease_timeout": 10.0, "switch_delay": 5.0}),
     "15s later", {"now": 15.0}),
    (Step(Action.START_SERVICE, "proxy", "r", site="B", node="b1", params={"after": ("db",)}),
     None, {}),
]  # fmt: skip


@pytest.mark.parametrize(("step", "said", "expect"), STEP_EFFECTS,
                         ids=[s.action.value for s, _, _ in STEP_EFFECTS])  # fmt: skip
def test_step_effects(step: Step, said: str | None, expect: dict[str, object]) -> None:
    before = healthy_at_a()
    after, words = apply_step(before, step)
    assert words == said
    assert before == healthy_at_a()  # pure: the input is not changed
    if "vm" in expect:
        domain, site, state = expect["vm"]  # type: ignore[misc]
        assert after.vm_state(domain, site) == state
    if "role" in expect:
        volume, site, role = expect["role"]  # type: ignore[misc]
        r = after.replica(volume, site)
        assert r is not None and r.role == role
    if "epoch" in expect:
        assert after.epoch == expect["epoch"]
    if "fenced" in expect:
        assert after.fenced.get(str(expect["fenced"])) is True
    if "now" in expect:
        assert after.now == expect["now"]
    if not expect:
        assert after == before


def test_wait_in_sync_clears_what_is_left_to_send() -> None:
    behind = healthy_at_a(replicas={
        **healthy_at_a().replicas,
        ("webdata", "A"): replica("webdata", "A", "primary", conn="SyncSource", behind=3 << 20),
        ("webdata", "B"): replica("webdata", "B", "secondary", "Inconsistent", "SyncTarget"),
    })  # fmt: skip
    step = Step(Action.WAIT_IN_SYNC, "webdata", "r", site="B", node="b1",
                params={"mode": "async", "source_site": "A", "behind_bytes": 3 << 20})  # fmt: skip
    after, _ = apply_step(behind, step)
    for site in ("A", "B"):
        r = after.replica("webdata", site)
        assert r is not None and r.in_sync, r


def test_live_drill_plans_the_way_back_from_the_way_over() -> None:
    start = synced()
    over = plan_migration(start, "B")
    assert over.runnable
    effect = apply_plan(start, over)
    at_b = effect.snapshot
    assert active_site(at_b) == ("B", "2 volume(s) are primary at B")
    assert at_b.vm_state("web", "B") == "running" and at_b.vm_state("web", "A") == "undefined"
    assert at_b.vm_state("db-vm", "B") == "running" and at_b.vm_state("db-vm", "A") == "shutoff"
    assert at_b.epoch == 5
    assert "migrate-live web: web at B: undefined -> running; web at A: running -> undefined" in (
        effect.changes
    )
    # planned from the unchanged snapshot the way back is "nothing to do"...
    stale = plan_migration(start, "A")
    assert [b.code for b in stale.blockers] == ["already-at-target"]
    # ... planned from the effect of the way over it is the mirror image
    back = plan_migration(at_b, "A")
    assert back.runnable and (back.from_site, back.to_site) == ("B", "A")
    assert [(s.action.value, s.target, s.site) for s in back.steps[:9]] == [
        ("stop-service", "frontend", "B"),
        ("stop-service", "proxy", "B"),
        ("shutdown-vm", "db", "B"),
        ("wait-in-sync", "dbdata", "A"),
        ("wait-in-sync", "webdata", "A"),
        ("demote", "dbdata", "B"),
        ("promote", "dbdata", "A"),
        ("allow-two-primaries", "webdata", None),
        ("promote", "webdata", "A"),
    ]
    promote = back.steps[6]
    assert promote.params["epoch"] == 6  # above the way over's epoch 5
    assert "start it at A" in next(s.reason for s in back.steps if s.action is Action.START_VM)
    home = apply_plan(at_b, back).snapshot
    assert active_site(home)[0] == "A"
    assert {k: v for k, v in home.vm_states.items() if v == "running"} == {
        ("db-vm", "A"): "running", ("web", "A"): "running"}  # fmt: skip


def test_a_blocked_plan_changes_nothing() -> None:
    start = healthy_at_a()
    blocked = plan_migration(start, "A")
    effect = apply_plan(start, blocked)
    assert effect.snapshot == start
    assert effect.changes == (
        "nothing: the plan is blocked (nothing to do: the cluster already runs at A)",
    )


def test_failover_effect_then_migration_back() -> None:
    lost = healthy_at_a(reachable={"A": False, "B": True},
                        fenced={"A": True}, fenced_reason={"A": "lease expired"})  # fmt: skip
    over = plan_failover(lost, "B")
    assert over.runnable, over.blockers
    at_b = apply_plan(lost, over).snapshot
    assert at_b.fenced["A"] is True
    assert {(v, s) for (v, s), r in at_b.replicas.items() if r.role == "primary"} == {
        ("dbdata", "B"), ("webdata", "B")}  # fmt: skip
    assert active_site(at_b) == ("B", "2 volume(s) are primary at B")
    assert at_b.vm_state("db-vm", "B") == "running" and at_b.vm_state("web", "B") == "running"
    # the way back needs the lost site back first: a plan cannot simulate that
    back = plan_migration(at_b, "A")
    assert [b.code for b in back.blockers] == ["site-unreachable"]
    assert apply_plan(at_b, back).snapshot == at_b
