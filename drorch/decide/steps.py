"""Plan steps: what to do, to what, where, and why, in words an operator reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from drorch.decide.actions import Action
from drorch.decide.params import ACTION_PARAMS, check_params
from drorch.model.reports import ReportItem, Severity

__all__ = [
    "ACTION_PARAMS",
    "Action",
    "Plan",
    "Step",
    "blocker",
    "fmt_bytes",
    "fmt_seconds",
    "messages",
    "note",
]


def _no_params() -> Mapping[str, object]:
    return MappingProxyType({})


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Step:
    """One step. `site`/`node` say where it acts; `params` carry the rest of what it
    needs, typed per action (`drorch.decide.params.ACTION_PARAMS`, checked here);
    `data_loss` marks a step that may lose acknowledged writes and so needs an explicit
    data-loss acknowledgement to run. `reason` is the same facts in an operator's words."""

    action: Action
    target: str
    reason: str
    site: str | None = None
    node: str | None = None
    data_loss: bool = False
    params: Mapping[str, object] = field(default_factory=_no_params, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", check_params(self.action, self.params))

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action.value,
            "target": self.target,
            "site": self.site,
            "node": self.node,
            "data_loss": self.data_loss,
            "reason": self.reason,
            "params": {k: _plain(v) for k, v in self.params.items()},
        }


def blocker(code: str, message: str, *, forceable: bool = False) -> ReportItem:
    """Why a plan must not run. `forceable`: `--force` may run it anyway (the operator
    knows something drorch could not observe; a step still re-checks at run time)."""
    return ReportItem(code, message, forceable=forceable)


def note(code: str, message: str) -> ReportItem:
    """Something the operator should know about a plan; never blocks it."""
    return ReportItem(code, message, severity=Severity.INFO)


def messages(reports: tuple[ReportItem, ...]) -> tuple[str, ...]:
    return tuple(r.message for r in reports)


@dataclass(frozen=True)
class Plan:
    """An ordered plan. `blockers` are coded reports saying why it must not run as is
    (empty = runnable); `--force` relaxes only the forceable ones (`blocking(force)`).
    `notes` are coded reports the operator should know (e.g. what could not be observed)."""

    kind: str  # migration | failover
    from_site: str
    to_site: str
    steps: tuple[Step, ...]
    blockers: tuple[ReportItem, ...] = ()
    notes: tuple[ReportItem, ...] = ()

    @property
    def runnable(self) -> bool:
        return not self.blockers

    def blocking(self, force: bool = False) -> tuple[ReportItem, ...]:
        """The blockers that stop it: all, or with `force` only the unforceable ones."""
        return tuple(b for b in self.blockers if not (force and b.forceable))

    @property
    def needs_data_loss_ack(self) -> bool:
        return any(s.data_loss for s in self.steps)

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "from_site": self.from_site,
            "to_site": self.to_site,
            "runnable": self.runnable,
            "needs_data_loss_ack": self.needs_data_loss_ack,
            "blockers": [b.as_dict() for b in self.blockers],
            "notes": [n.as_dict() for n in self.notes],
            "steps": [s.as_dict() for s in self.steps],
        }


def fmt_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def fmt_seconds(s: float) -> str:
    return f"{s * 1000:.0f}ms" if s < 1 else f"{s:g}s"
