"""Plans are data: typed `Step.params` per action, coded blockers and notes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from drorch.decide.plan import Action, Plan, Step, plan_failover, plan_migration
from drorch.decide.steps import ACTION_PARAMS, messages
from drorch.model.reports import Severity
from tests.decide.conftest import healthy_at_a, replica
from tests.decide.test_decide_plans import site_a_lost


def params(plan: Plan, action: str, target: str) -> dict[str, object]:
    step = next(s for s in plan.steps if s.action.value == action and s.target == target)
    return dict(step.params)


def test_every_action_declares_its_params() -> None:
    assert set(ACTION_PARAMS) == set(Action)
    for action, spec in ACTION_PARAMS.items():
        for name, p in spec.items():
            assert p.kind in (str, int, float, bool, tuple), (action, name)
            assert p.doc, (action, name)


def test_migration_steps_carry_their_parameters() -> None:
    plan = plan_migration(healthy_at_a(), "B")
    assert params(plan, "promote", "dbdata") == {
        "epoch": 5,
        "second_primary": False,
        "disk": "UpToDate",
    }
    assert params(plan, "wait-in-sync", "webdata") == {
        "mode": "async",
        "source_site": "A",
        "behind_bytes": 0,
    }
    assert params(plan, "define-vm", "db") == {
        "domain": "db-vm",
        "xml_source": "saved",
        "from_site": "A",
    }
    assert params(plan, "start-vm", "db") == {
        "domain": "db-vm",
        "volumes": ("dbdata",),
        "after": (),
    }
    assert params(plan, "shutdown-vm", "web")["before"] == ("frontend",)
    assert params(plan, "start-service", "frontend") == {"after": ("web", "proxy")}
    assert params(plan, "verify-monitor", "proxy/port") == {
        "resource": "proxy",
        "monitor": "port",
        "type": "tcp",
        "check": "127.0.0.1:6432",
        "level": 2,
        "timeout": 3.0,
    }


def test_the_behind_bytes_are_what_was_observed() -> None:
    lagging = dict(healthy_at_a().replicas)
    lagging[("webdata", "A")] = replica("webdata", "A", "primary", behind=3 * 2**20)
    plan = plan_migration(healthy_at_a(replicas=lagging), "B")
    assert params(plan, "wait-in-sync", "webdata")["behind_bytes"] == 3 * 2**20


def test_live_hand_over_steps_name_both_nodes_and_the_pause_budget() -> None:
    from drorch.model.loader import parse_cluster_text
    from tests.decide.conftest import CLUSTER_YAML

    text = CLUSTER_YAML.replace("driver: drbd, mode: async", "driver: drbd, mode: sync")
    synced = dataclasses.replace(healthy_at_a(), cluster=parse_cluster_text(text, "shop.yaml")[0])
    plan = plan_migration(synced, "B")
    assert params(plan, "allow-two-primaries", "webdata") == {"vm": "web", "nodes": ("a2", "b1")}
    assert params(plan, "forbid-two-primaries", "webdata") == {
        "vm": "web",
        "nodes": ("a2", "b1"),
        "primary_site": "B",
    }
    live = params(plan, "migrate-live", "web")
    assert live == {
        "domain": "web",
        "from_site": "A",
        "max_downtime": 0.3,
        "volumes": ("webdata",),
    }
    promote = next(s for s in plan.steps if s.action is Action.PROMOTE and s.target == "webdata")
    assert promote.params["second_primary"] is True and promote.params["epoch"] == 5


def test_failover_steps_carry_the_takeover_wait_and_fencing() -> None:
    plan = plan_failover(healthy_at_a(**site_a_lost()), "B")
    assert params(plan, "confirm-fenced", "A") == {"confirmed": False}
    assert params(plan, "wait-takeover", "A") == {
        "seconds": 15.0,
        "lease_timeout": 10.0,
        "switch_delay": 5.0,
    }
    assert params(plan, "promote", "webdata") == {
        "epoch": 5,
        "second_primary": False,
        "disk": "Outdated",
    }
    fenced = site_a_lost(fenced={"A": True}, fenced_reason={"A": "lease expired"})
    plan = plan_failover(healthy_at_a(**fenced), "B")
    assert params(plan, "confirm-fenced", "A") == {"confirmed": True, "how": "lease expired"}


def test_a_plan_serialises_as_plain_json_and_yaml() -> None:
    plan = plan_migration(healthy_at_a(), "B")
    data = plan.as_dict()
    assert json.loads(json.dumps(data)) == yaml.safe_load(yaml.safe_dump(data))
    steps = data["steps"]
    assert isinstance(steps, list)
    assert steps[-1]["params"]["check"] == "127.0.0.1:6432"


@pytest.mark.parametrize(
    ("params_", "problem"),
    [
        ({}, "missing 'epoch'"),
        ({"epoch": "5", "second_primary": False, "disk": "UpToDate"}, "'epoch' must be int"),
        ({"epoch": True, "second_primary": False, "disk": "UpToDate"}, "'epoch' must be int"),
        ({"epoch": 5, "second_primary": False, "disk": "UpToDate", "x": 1}, "unknown parameter"),
    ],
)
def test_a_step_with_wrong_params_is_refused_when_made(
    params_: dict[str, object], problem: str
) -> None:
    with pytest.raises(TypeError, match=problem):
        Step(Action.PROMOTE, "v", "why", params=params_)


def test_params_are_frozen() -> None:
    step = Step(Action.WAIT_TAKEOVER, "A", "why",
                params={"seconds": 15, "lease_timeout": 10, "switch_delay": 5})  # fmt: skip
    assert step.params["seconds"] == 15.0 and isinstance(step.params["seconds"], float)
    with pytest.raises(TypeError):
        step.params["seconds"] = 1  # type: ignore[index]


def test_blockers_and_notes_are_coded() -> None:
    plan = plan_failover(healthy_at_a(), "B")
    assert [(b.code, b.forceable) for b in plan.blockers] == [("source-not-fenced", False)]
    assert all(b.severity is Severity.ERROR for b in plan.blockers)
    assert [n.code for n in plan.notes] == ["active-site", "promotion-epoch", "rpo", "rpo"]
    assert plan.notes[0].severity is Severity.INFO
    assert plan.blocking(force=True) == plan.blockers  # --force does not relax it


def test_force_relaxes_only_the_forceable_blockers() -> None:
    unobserved = dict(healthy_at_a().replicas)
    del unobserved[("dbdata", "B")]
    plan = plan_migration(healthy_at_a(replicas=unobserved), "B")
    assert [(b.code, b.forceable) for b in plan.blockers] == [("replica-unobserved", True)]
    assert not plan.runnable
    assert plan.blocking(force=False) == plan.blockers
    assert plan.blocking(force=True) == ()
    # a forceable blocker next to an unforceable one: --force leaves the unforceable one
    both = plan_migration(healthy_at_a(replicas=unobserved, reachable={"A": True, "B": False}), "B")
    assert [b.code for b in both.blocking(force=True)] == ["site-unreachable"]
    assert "site B is unreachable: a planned migration needs both sites" in messages(
        both.blocking(force=True)
    )


def test_migration_builds_its_texts_from_data_not_by_parsing_reasons() -> None:
    import drorch.decide.migration as migration

    assert ".split(" not in Path(migration.__file__).read_text()
