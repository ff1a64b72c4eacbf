"""What `when:` names mean while a run is in progress.

    params.NAME                    a runbook param (resolved value)
    facts.NAME                     a fact a step recorded (ctx.facts), null if none
    steps.ID.status|changed|message, steps.ID.data.KEY   an earlier step's outcome
    observed.replica.VOLUME.SITE.role|disk|connection|out_of_sync_bytes|lag_bytes|epoch
    observed.vm.VM.SITE            the VM's state there (running, shut off, undefined, ...)
    observed.reachable.SITE        true when the site answered
    observed.epoch                 the highest quorum epoch seen

`observed.*` is observed afresh (through the Environment) each time a condition uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from drorch.decide.snapshot import Snapshot

REPLICA_FIELDS = ("role", "disk", "connection", "out_of_sync_bytes", "lag_bytes", "epoch")


@dataclass(frozen=True)
class StepOutcome:
    status: str  # ok | failed | skipped | recovered | would-run | would-fail
    changed: bool = False
    message: str = ""
    data: Mapping[str, object] = field(default_factory=dict)


class Names:
    def __init__(
        self,
        params: Mapping[str, object],
        facts: Mapping[str, object],
        outcomes: Mapping[str, StepOutcome],
        observe: Callable[[], Snapshot],
    ) -> None:
        self.params = params
        self.facts = facts
        self.outcomes = outcomes
        self.observe = observe

    def resolve(self, seg: tuple[str, ...]) -> object:
        root, rest = seg[0], seg[1:]
        if root == "params":
            return self.params.get(rest[0]) if len(rest) == 1 else None
        if root == "facts":
            return self.facts.get(rest[0]) if len(rest) == 1 else None
        if root == "steps":
            return self._step(rest)
        if root == "observed":
            return self._observed(rest)
        return None

    def _step(self, rest: tuple[str, ...]) -> object:
        outcome = self.outcomes.get(rest[0]) if rest else None
        if outcome is None or len(rest) < 2:
            return None
        if rest[1] == "data":
            return outcome.data.get(rest[2]) if len(rest) == 3 else None
        return {"status": outcome.status, "changed": outcome.changed,
                "message": outcome.message}.get(rest[1])  # fmt: skip

    def _observed(self, rest: tuple[str, ...]) -> object:
        snap = self.observe()
        if rest == ("epoch",):
            return snap.epoch
        if len(rest) == 2 and rest[0] == "reachable":
            return snap.reachable.get(rest[1])
        if len(rest) == 3 and rest[0] == "vm":
            vm = next((v for v in snap.cluster.vms if v.name == rest[1]), None)
            return None if vm is None else snap.vm_state(vm.domain, rest[2])
        if len(rest) == 4 and rest[0] == "replica" and rest[3] in REPLICA_FIELDS:
            view = snap.replica(rest[1], rest[2])
            return None if view is None else getattr(view, rest[3], None)
        return None
