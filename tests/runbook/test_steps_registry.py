"""Every plan Action has a real step type, every plan the sim lab produces binds to
them, and the runbook-level step types take the argument names TEAM.md promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.decide.params import ACTION_PARAMS
from drorch.observe import observe
from drorch.runbook.expand import ACTION_STEP_TYPES, compute_plan, expand
from drorch.runbook.steps.base import REQUIRED, load_step_types
from drorch.virt.sim_world import power_off
from tests.runbook.steps_lab import SimLab

FAMILIES = (
    "checks",
    "replication",
    "replication_mode",
    "vm",
    "vm_move",
    "quorum",
    "service",
    "monitor",
)


def test_every_action_maps_to_a_registered_real_step_type() -> None:
    types = load_step_types()
    for action, name in ACTION_STEP_TYPES.items():
        step = types.get(name)
        assert step is not None, f"{action} -> {name} is not registered"
        module = type(step).__module__.rsplit(".", 1)[-1]
        assert module in FAMILIES, f"{name} comes from {type(step).__module__}"
        declared = {p.name for p in step.params}
        assert {"target", "site", "node"} <= declared, name
        assert set(ACTION_PARAMS[action]) <= declared, (name, set(ACTION_PARAMS[action]) - declared)
        # a plan step's arguments are target/site/node + its params: nothing else is required
        required = {p.name for p in step.params if p.default is REQUIRED}
        assert required <= {"target"} | {k for k, s in ACTION_PARAMS[action].items() if s.required}


CONTRACT = {  # TEAM.md: the names coord, agent and drills write runbooks against
    "check.sites_reachable": {"sites"},
    "check.quorum": {"site"},
    "check.replication_in_sync": {"volumes", "site"},
    "check.monitors": {"site", "vms"},
    "check.fenced": {"target", "site", "confirmed", "how"},
    "replication.set_mode": {"volumes", "mode"},
    "replication.wait_in_sync": {"target", "site"},
    "replication.reprotect": {"site", "volumes"},
    "vm.migrate_live": {"target", "site", "fallback"},
    "vm.shutdown": {"target", "site", "timeout"},
    "vm.define": {"target", "site"},
    "vm.start": {"target", "site", "timeout"},
    "vm.cold_failover": {"target", "site", "timeout"},
    "vm.verify_alive": {"target", "site", "timeout"},
    "quorum.release": {"to"},
    "quorum.acquire": {"site"},
    "quorum.wait_takeover": {"target"},
    "service.start": {"target", "site"},
    "service.stop": {"target", "site"},
    "service.relocate": {"target", "site"},
    "monitor.verify": {"target", "site"},
}


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_step_type_takes_the_contract_arguments_and_documents_itself(name: str) -> None:
    step = load_step_types()[name]
    assert CONTRACT[name] <= {p.name for p in step.params}
    assert len(step.doc.splitlines()) >= 2 and step.doc != "(undocumented)"
    if step.undo is not None:
        assert step.undo in load_step_types()


UNDO = {
    "replication.promote": "replication.demote",
    "replication.demote": "replication.promote",
    "replication.allow_two_primaries": "replication.forbid_two_primaries",
    "replication.forbid_two_primaries": "replication.allow_two_primaries",
    "replication.set_mode": "replication.set_mode",
    "vm.start": "vm.shutdown",
    "vm.shutdown": "vm.start",
    "service.start": "service.stop",
    "service.stop": "service.start",
}


def test_the_undo_pairs() -> None:
    types = load_step_types()
    assert {n: types[n].undo for n in UNDO} == UNDO


def _bind_all(lab: SimLab, kind: str, to: str) -> int:
    plan = compute_plan(observe(lab.cluster, lab.env).snapshot, kind, to)
    children = expand(plan, "go")  # raises plan-unmapped when a step does not bind
    assert len(children) == len(plan.steps) > 0
    return len(children)


def test_every_plan_for_the_sim_lab_binds(tmp_path: Path) -> None:
    lab = SimLab(tmp_path)
    assert _bind_all(lab, "migration", "B") == 21
    power_off(lab.cluster, lab.env, "A")
    lab.clock.advance(60)
    assert _bind_all(lab, "failover", "B") > 5
