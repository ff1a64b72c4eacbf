"""What to do about a failing resource: restart it in place, or escalate. PURE.

Pacemaker's migration-threshold and failure-timeout: a resource may be restarted in
place up to `max_restarts` times within `failure_window`; the next failure in that
window escalates to moving its group (live migration if it is migratable, else a
failover of the group). Failures older than the window are forgotten. A failure while a
recovery is still under way, within its budget, changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DEFAULT_MAX_RESTARTS = 2
DEFAULT_FAILURE_WINDOW = 600.0


class Recovery(StrEnum):
    NONE = "none"
    WAIT = "wait"  # a restart is under way within its budget
    RESTART = "restart"
    ESCALATE = "escalate"


@dataclass(frozen=True)
class RecoveryPolicy:
    max_restarts: int = DEFAULT_MAX_RESTARTS
    failure_window: float = DEFAULT_FAILURE_WINDOW
    restart_budget: float = 60.0  # how long a restart may take before it counts as failed

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.failure_window <= 0 or self.restart_budget <= 0:
            raise ValueError("need max_restarts >= 0, failure_window > 0, restart_budget > 0")


@dataclass(frozen=True)
class RecoveryDecision:
    action: Recovery
    reason: str
    failures_in_window: int


def decide_recovery(
    resource: str,
    *,
    failed_now: bool,
    failures: tuple[float, ...],
    restart_started: float | None,
    now: float,
    policy: RecoveryPolicy,
) -> RecoveryDecision:
    """`failures`: when earlier failures (that led to restarts) happened; `restart_started`:
    when the restart in progress began, if any."""
    recent = tuple(t for t in failures if now - t <= policy.failure_window)
    window = f"{policy.failure_window:g}s"
    if not failed_now:
        return RecoveryDecision(Recovery.NONE, f"{resource} passes its monitors", len(recent))
    if restart_started is not None and now - restart_started <= policy.restart_budget:
        left = policy.restart_budget - (now - restart_started)
        return RecoveryDecision(
            Recovery.WAIT,
            f"{resource} is being restarted ({left:.0f}s of its {policy.restart_budget:g}s"
            " budget left)",
            len(recent),
        )
    if len(recent) < policy.max_restarts:
        return RecoveryDecision(
            Recovery.RESTART,
            f"{resource} failed; restart {len(recent) + 1} of {policy.max_restarts} in place"
            f" within {window}",
            len(recent),
        )
    return RecoveryDecision(
        Recovery.ESCALATE,
        f"{resource} failed {len(recent) + 1} times within {window} (max_restarts"
        f" {policy.max_restarts}): escalate to moving its group",
        len(recent),
    )
