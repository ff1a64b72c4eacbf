"""`plan.execute`: observe, compute a `decide/` plan, and turn its steps into runbook steps.

Every `Action` maps to exactly one step type (`ACTION_STEP_TYPES`; a test keeps the
two sets equal). A plan step becomes that step type with the arguments

    target: step.target, site: step.site, node: step.node (when set), **step.params

bound against the step type's declared params, so a plan step a step type cannot take
fails the expansion instead of running with half its meaning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from drorch.decide.snapshot import Snapshot
from drorch.decide.steps import Action, Plan, Step, note
from drorch.runbook.steps.base import STEP_TYPES, StepFailed, bind_args

ACTION_STEP_TYPES: Mapping[Action, str] = {
    Action.STOP_SERVICE: "service.stop",
    Action.SHUTDOWN_VM: "vm.shutdown",
    Action.WAIT_IN_SYNC: "replication.wait_in_sync",
    Action.DEMOTE: "replication.demote",
    Action.PROMOTE: "replication.promote",
    Action.ALLOW_TWO_PRIMARIES: "replication.allow_two_primaries",
    Action.MIGRATE_LIVE: "vm.migrate_live",
    Action.FORBID_TWO_PRIMARIES: "replication.forbid_two_primaries",
    Action.RELOCATE_SERVICE: "service.relocate",
    Action.DEFINE_VM: "vm.define",
    Action.START_VM: "vm.start",
    Action.START_SERVICE: "service.start",
    Action.VERIFY_MONITOR: "monitor.verify",
    Action.CONFIRM_FENCED: "check.fenced",
    Action.WAIT_TAKEOVER: "quorum.wait_takeover",
}


@dataclass(frozen=True)
class PlannedStep:
    """One plan step as a runbook step: `key` is unique in the run."""

    key: str
    action: str
    args: dict[str, object]
    reason: str
    data_loss: bool

    def as_dict(self) -> dict[str, object]:
        return {"key": self.key, "action": self.action, "args": self.args,
                "reason": self.reason, "data_loss": self.data_loss}  # fmt: skip

    @staticmethod
    def from_dict(raw: Mapping[str, object]) -> PlannedStep:
        args = raw.get("args")
        return PlannedStep(
            str(raw["key"]), str(raw["action"]), dict(args) if isinstance(args, dict) else {},
            str(raw.get("reason", "")), bool(raw.get("data_loss", False)),
        )  # fmt: skip


COLD_MIGRATION = "cold-migration"


def all_cold(snapshot: Snapshot) -> Snapshot:
    """The snapshot with every VM and service taken as not migratable: a planned
    migration of it shuts everything down at the source (dependents first), switches the
    volumes and boots everything at the target (the cold drill, which proves that
    boot-time dependencies work at the DR site)."""
    c = snapshot.cluster
    cold = dataclasses.replace(
        c,
        vms=tuple(dataclasses.replace(v, migratable=False) for v in c.vms),
        services=tuple(dataclasses.replace(s, migratable=False) for s in c.services),
    )
    return dataclasses.replace(snapshot, cluster=cold)


def compute_plan(snapshot: Snapshot, kind: str, to: str) -> Plan:
    from drorch.decide.plan import plan_failover, plan_migration
    from drorch.decide.start import START, plan_start

    if to not in {s.name for s in snapshot.cluster.sites}:
        raise StepFailed("unknown-site", f"no site {to!r} in cluster {snapshot.cluster.name}")
    if kind == COLD_MIGRATION:
        plan = plan_migration(all_cold(snapshot), to)
        why = note("cold-migration", "every VM and service is moved cold (shut down, "
                   "switched, booted at the target), migratable or not")  # fmt: skip
        return dataclasses.replace(plan, notes=(why, *plan.notes))
    if kind == START:
        return plan_start(snapshot, to)
    planner = plan_migration if kind == "migration" else plan_failover
    return planner(snapshot, to)


def plan_args(step: Step) -> dict[str, object]:
    raw: dict[str, object] = {"target": step.target}
    if step.site is not None:
        raw["site"] = step.site
    if step.node is not None:
        raw["node"] = step.node
    params = getattr(step, "params", None) or {}
    raw.update(dict(params))
    return raw


def expand(
    plan: Plan, parent: str, extra: Mapping[Action, Mapping[str, object]] | None = None
) -> list[PlannedStep]:
    """The plan's steps as runbook steps, or StepFailed("plan-blocked"/"plan-unmapped").
    `extra` adds runbook-level arguments to every step of an action (plan.execute's
    `fallback` goes to each migrate-live step)."""
    out: list[PlannedStep] = []
    for i, step in enumerate(plan.steps, start=1):
        name = ACTION_STEP_TYPES[step.action]
        step_type = STEP_TYPES.get(name)
        if step_type is None:
            raise StepFailed(
                "plan-unmapped", f"plan step {i} ({step.action.value}) needs step type {name!r}"
            )
        raw = plan_args(step)
        raw.update((extra or {}).get(step.action, {}))
        args, problems = bind_args(step_type.params, raw)
        if problems:
            why = "; ".join(p.message for p in problems)
            raise StepFailed(
                "plan-unmapped", f"plan step {i} ({step.action.value} {step.target}): {why}"
            )
        key = f"{parent}/{i:02d}-{step.action.value}-{step.target}"
        out.append(PlannedStep(key, name, args, step.reason, step.data_loss))
    return out


def blockers(plan: Plan, force: bool) -> list[str]:
    """The blockers that stop the plan: all of them, or with `force` the unforceable
    ones (blockers that are bare strings, from before coded reports, never yield)."""
    out: list[str] = []
    for item in plan.blockers:
        forceable = bool(getattr(item, "forceable", False))
        if not (force and forceable):
            out.append(str(item))
    return out
