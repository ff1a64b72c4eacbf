"""Plan steps: what to do, to what, where, and why, in words an operator reads."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    STOP_SERVICE = "stop-service"
    SHUTDOWN_VM = "shutdown-vm"
    WAIT_IN_SYNC = "wait-in-sync"
    DEMOTE = "demote"
    PROMOTE = "promote"
    ALLOW_TWO_PRIMARIES = "allow-two-primaries"
    MIGRATE_LIVE = "migrate-live"
    FORBID_TWO_PRIMARIES = "forbid-two-primaries"
    RELOCATE_SERVICE = "relocate-service"
    DEFINE_VM = "define-vm"
    START_VM = "start-vm"
    START_SERVICE = "start-service"
    VERIFY_MONITOR = "verify-monitor"
    CONFIRM_FENCED = "confirm-fenced"
    WAIT_TAKEOVER = "wait-takeover"


@dataclass(frozen=True)
class Step:
    """One step. `site`/`node` say where it acts; `data_loss` marks a step that may lose
    acknowledged writes and so needs an explicit data-loss acknowledgement to run."""

    action: Action
    target: str
    reason: str
    site: str | None = None
    node: str | None = None
    data_loss: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action.value,
            "target": self.target,
            "site": self.site,
            "node": self.node,
            "data_loss": self.data_loss,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Plan:
    """An ordered plan. `blockers` explain why it must not run as is (empty = runnable);
    `notes` are things the operator should know (e.g. what could not be observed)."""

    kind: str  # migration | failover
    from_site: str
    to_site: str
    steps: tuple[Step, ...]
    blockers: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def runnable(self) -> bool:
        return not self.blockers

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
            "blockers": list(self.blockers),
            "notes": list(self.notes),
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
