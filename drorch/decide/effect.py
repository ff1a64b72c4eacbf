"""What a plan would leave behind: apply its steps to a Snapshot, purely.

    effect = apply_plan(snapshot, plan)
    back = plan_migration(effect.snapshot, "A")   # the way back, from the way over

A dry run changes nothing, so a runbook that goes over and back (the live and cold
drills) cannot plan its return leg from what it observes: nothing has moved yet. It
plans the return leg from the simulated effect of the way over instead. Each step's
effect is what its step type promises when it succeeds:

| action | effect on the snapshot |
|---|---|
| shutdown-vm | the domain is shut off at the site |
| wait-in-sync | nothing left to send for the volume; its replica at the site UpToDate |
| demote | the replica at the site is secondary |
| promote | the replica at the site is primary at the step's epoch (the cluster's at least) |
| migrate-live | the domain runs at the target and is undefined at its source |
| define-vm | the domain is defined (shut off) at the site |
| start-vm | the domain runs at the site |
| confirm-fenced | the site is fenced: none of its replicas is primary, none of its VMs runs |
| wait-takeover | `now` moves on by the wait |

Services, monitors and the two-primaries switch are not part of a Snapshot: their steps
change nothing in it. A blocked plan does not run, so its effect is no change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from drorch.decide.snapshot import Snapshot
from drorch.decide.steps import Action, Plan, Step
from drorch.model.states import ACTIVE_VM_STATES, SYNCING, ConnState, DiskState, Role, VMState


@dataclass(frozen=True)
class Effect:
    """The snapshot after the plan, and each change in an operator's words."""

    snapshot: Snapshot
    changes: tuple[str, ...]


def _vm(snapshot: Snapshot, domain: str, site: str, state: str) -> tuple[Snapshot, str]:
    before = snapshot.vm_state(domain, site)
    states = {**snapshot.vm_states, (domain, site): state}
    return dataclasses.replace(
        snapshot, vm_states=states
    ), f"{domain} at {site}: {before} -> {state}"


def _replica(snapshot: Snapshot, volume: str, site: str, **fields: object) -> tuple[Snapshot, str]:
    r = snapshot.replica(volume, site)
    if r is None:
        return snapshot, f"{volume} at {site}: not observed, left unknown"
    new = dataclasses.replace(r, **fields)  # type: ignore[arg-type]
    said = ", ".join(f"{k} {getattr(r, k)} -> {v}" for k, v in fields.items() if getattr(r, k) != v)
    replicas = {**snapshot.replicas, (volume, site): new}
    return dataclasses.replace(
        snapshot, replicas=replicas
    ), f"{volume} at {site}: {said or 'unchanged'}"


def _shutdown(s: Snapshot, step: Step) -> tuple[Snapshot, str]:
    return _vm(s, str(step.params["domain"]), _site(step), VMState.SHUTOFF)


def _define(s: Snapshot, step: Step) -> tuple[Snapshot, str]:
    domain, site = str(step.params["domain"]), _site(step)
    if s.vm_state(domain, site) != VMState.UNDEFINED:
        return s, f"{domain} at {site}: already defined"
    return _vm(s, domain, site, VMState.SHUTOFF)


def _start(s: Snapshot, step: Step) -> tuple[Snapshot, str]:
    return _vm(s, str(step.params["domain"]), _site(step), VMState.RUNNING)


def _migrate(s: Snapshot, step: Step) -> tuple[Snapshot, str]:
    domain, src = str(step.params["domain"]), str(step.params["from_site"])
    s, there = _vm(s, domain, _site(step), VMState.RUNNING)
    s, here = _vm(s, domain, src, VMState.UNDEFINED)
    return s, f"{there}; {here}"


def _wait_in_sync(s: Snapshot, step: Step) -> tuple[Snapshot, str]:
    said = []
    for (volume, site), r in sorted(s.replicas.items()):
        if volume != step.target:
            continue
        fields: dict[str, object] = {"out_of_sync_bytes": 0, "lag_bytes": 0}
        if r.connection in SYNCING:
            fields["connection"] = ConnState.CONNECTED
        if site == step.site:
            fields["disk"] = DiskState.UP_TO_DATE
        s, one = _replica(s, volume, site, **fields)
        said.append(one)
    return s, "; ".join(said) or f"{step.target}: no replica observed"


def _demote(s: Snapshot, step: Step) -> tuple[Snapshot, str]:
    return _replica(s, step.target, _site(step), role=Role.SECONDARY)


def _promote(s: Snapshot, step: Step) -> tuple[Snapshot, str]:
    epoch = int(_number(step, "epoch"))
    s, said = _replica(s, step.target, _site(step), role=Role.PRIMARY, epoch=epoch)
    if epoch > s.epoch:
        s = dataclasses.replace(s, epoch=epoch)
        said += f" (cluster epoch {epoch})"
    return s, said


def _fenced(s: Snapshot, step: Step) -> tuple[Snapshot, str]:
    """A fenced site writes nothing: none of its replicas is primary any more (what they
    are is unknown until it comes back) and none of its VMs runs."""
    site = _site(step)
    s = dataclasses.replace(s, fenced={**s.fenced, site: True})
    said = [f"{site}: fenced"]
    for (volume, where), r in sorted(s.replicas.items()):
        if where == site and r.role == Role.PRIMARY:
            s, one = _replica(s, volume, site, role=Role.UNKNOWN)
            said.append(one)
    for (domain, where), state in sorted(s.vm_states.items()):
        if where == site and state in ACTIVE_VM_STATES:
            s, one = _vm(s, domain, site, VMState.CRASHED)
            said.append(one)
    return s, "; ".join(said)


def _wait(s: Snapshot, step: Step) -> tuple[Snapshot, str]:
    seconds = _number(step, "seconds")
    return dataclasses.replace(s, now=s.now + seconds), f"{seconds:g}s later"


def _number(step: Step, key: str) -> float:
    value = step.params[key]
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{step.action.value} {step.target}: {key} is {value!r}, not a number")
    return float(value)


def _site(step: Step) -> str:
    if step.site is None:
        raise ValueError(f"{step.action.value} {step.target}: a step with an effect names its site")
    return step.site


EFFECTS: dict[Action, Callable[[Snapshot, Step], tuple[Snapshot, str]]] = {
    Action.SHUTDOWN_VM: _shutdown,
    Action.WAIT_IN_SYNC: _wait_in_sync,
    Action.DEMOTE: _demote,
    Action.PROMOTE: _promote,
    Action.MIGRATE_LIVE: _migrate,
    Action.DEFINE_VM: _define,
    Action.START_VM: _start,
    Action.CONFIRM_FENCED: _fenced,
    Action.WAIT_TAKEOVER: _wait,
}
# Not in a Snapshot: what they change is recorded elsewhere (services) or not at all.
NO_EFFECT = frozenset({
    Action.STOP_SERVICE, Action.START_SERVICE, Action.RELOCATE_SERVICE,
    Action.ALLOW_TWO_PRIMARIES, Action.FORBID_TWO_PRIMARIES, Action.VERIFY_MONITOR,
})  # fmt: skip


def apply_step(snapshot: Snapshot, step: Step) -> tuple[Snapshot, str | None]:
    """The snapshot after `step` succeeded, and what changed (None: nothing it shows)."""
    effect = EFFECTS.get(step.action)
    if effect is None:
        return snapshot, None
    return effect(snapshot, step)


def apply_plan(snapshot: Snapshot, plan: Plan, force: bool = False) -> Effect:
    """The snapshot after every step of `plan` succeeded. A plan with blockers (all of
    them, or with `force` the unforceable ones) does not run: no change."""
    blocking = plan.blocking(force)
    if blocking:
        why = "; ".join(b.message for b in blocking)
        return Effect(snapshot, (f"nothing: the plan is blocked ({why})",))
    changes: list[str] = []
    for step in plan.steps:
        snapshot, said = apply_step(snapshot, step)
        if said is not None:
            changes.append(f"{step.action.value} {step.target}: {said}")
    return Effect(snapshot, tuple(changes))
