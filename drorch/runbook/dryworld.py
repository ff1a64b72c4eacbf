"""The world a dry run plans in: what it observed, moved by the plans it has planned.

A dry run changes nothing, so the second `plan.execute` of a runbook that goes over and
back (the live and cold drills) would plan the way back from the unchanged cluster:
"nothing to do, the cluster already runs at A". Instead, each plan a dry run computes
is applied to its snapshot (`drorch.decide.effect.apply_plan`, pure), and the next plan
is computed from that simulated snapshot. A real run always plans from what it observes.

A dry run's `replication.set_mode` changes no replica either, yet the plan after it
depends on the mode (an async volume's VM moves cold, a sync one's live): its check
reports the modes it would leave (`dry_modes` in its result, kept in the run's facts
under DRY_MODES), and every later plan of the dry run is computed with those modes
(`with_modes`), while its steps are still checked against the cluster, a step that
needs a mode reading it from `dry_modes(facts)` (only the mode is supposed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from drorch.decide.effect import apply_plan
from drorch.decide.snapshot import Snapshot
from drorch.decide.steps import Plan
from drorch.environment import Environment
from drorch.model.types import Cluster

OBSERVED = "what was observed now"
DRY_MODES = "dry_modes"  # the run's facts: volume -> mode a dry run's set_mode would set


@dataclass(frozen=True)
class Simulated:
    """The snapshot after the plans of the steps `after` (in order), and what the last
    of them changed."""

    snapshot: Snapshot
    after: tuple[str, ...]
    changes: tuple[str, ...]

    def source(self) -> str:
        return f"the simulated effect of {', '.join(self.after)} (a dry run moves nothing)"


def planning_snapshot(
    cluster: Cluster, env: Environment, simulated: Simulated | None, dry_run: bool
) -> tuple[Snapshot, str]:
    """The snapshot to plan from, and where it comes from (for the operator)."""
    if dry_run and simulated is not None:
        return simulated.snapshot, simulated.source()
    from drorch.observe import observe

    return observe(cluster, env).snapshot, OBSERVED


def after_plan(
    simulated: Simulated | None, step: str, snapshot: Snapshot, plan: Plan, force: bool
) -> Simulated:
    """The dry run's world once `step`'s plan (computed from `snapshot`) has run."""
    effect = apply_plan(snapshot, plan, force)
    before = simulated.after if simulated is not None else ()
    return Simulated(effect.snapshot, (*before, step), effect.changes)


def with_modes(snapshot: Snapshot, modes: Mapping[str, str]) -> Snapshot:
    """`snapshot` with the replicas of each volume in `modes` running in that mode."""
    if not modes:
        return snapshot
    replicas = {
        key: replace(r, mode=modes[r.volume]) if r.volume in modes else r
        for key, r in snapshot.replicas.items()
    }
    return replace(snapshot, replicas=replicas)


def dry_modes(facts: Mapping[str, object]) -> dict[str, str]:
    """volume -> mode, as the dry run's earlier replication.set_mode steps would set it."""
    modes = facts.get(DRY_MODES)
    return {str(v): str(m) for v, m in modes.items()} if isinstance(modes, dict) else {}


def note_dry_modes(facts: dict[str, object], data: Mapping[str, object]) -> None:
    """Keep the modes a dry-run check says it would set (its result's `dry_modes`)."""
    modes = data.get(DRY_MODES)
    if isinstance(modes, dict):
        facts[DRY_MODES] = {**dry_modes(facts), **{str(v): str(m) for v, m in modes.items()}}
