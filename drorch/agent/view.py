"""What one agent cycle sees and reports: the witness as this site sees it, the seams
for local resources, and the cycle's report (what `drorch agent status` shows)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from drorch.agent.jobs import Job
from drorch.decide.agent import Feed, SelfFenceDecision, Takeover
from drorch.decide.quorum import QuorumDecision


@dataclass(frozen=True)
class LeaseState:
    """The witness as this site sees it. `renewed_at`: monotonic time of the last granted
    renewal; `gained_at`: when this site gained the lease it holds now."""

    reachable: bool
    held: bool
    epoch: int = 0
    holder: str | None = None
    lease_left: float = 0.0
    renewed_at: float | None = None
    gained_at: float | None = None
    outdated_here: tuple[str, ...] = ()  # volumes the witness records outdated at this site


class LeaseSource(Protocol):
    def lease(self) -> LeaseState: ...


class LocalResources(Protocol):
    def primary_here(self) -> tuple[str, ...]:
        """Names of the volumes that are primary and guests/services running here."""
        ...

    def self_fence(self, decision: SelfFenceDecision) -> list[str]:
        """Stop writing (see decide_self_fence); returns what was done, one line each."""
        ...


StartTakeover = Callable[[Takeover, int], Job]  # a started site-failover run
StartFence = Callable[[], Job]  # a started fence of the lost site


@dataclass
class CycleReport:
    at: float
    members: tuple[str, ...]
    quorum: QuorumDecision
    feed: Feed
    self_fence: SelfFenceDecision
    takeover: Takeover
    primary_here: tuple[str, ...]
    monitors: dict[str, object]
    watchdog: dict[str, object]
    maintenance: bool
    acted: list[str] = field(default_factory=list)
    health: str = ""
    jobs: dict[str, object] = field(default_factory=dict)
    replicas: dict[str, dict[str, object]] = field(default_factory=dict)  # drorch.agent.rejoin
    unobserved: dict[str, str] = field(default_factory=dict)  # drorch.agent.bounded: why
    start: dict[str, object] = field(default_factory=dict)  # drorch.agent.restart

    def as_dict(self) -> dict[str, object]:
        return {
            "at": self.at,
            "members": list(self.members),
            "quorum": {"held": self.quorum.has_quorum, "reason": self.quorum.reason},
            "watchdog": {**self.watchdog, "fed": self.feed.feed, "reason": self.feed.reason},
            "self_fence": {"fence": self.self_fence.fence, "reason": self.self_fence.reason},
            "takeover": {
                "action": self.takeover.action.value,
                "reason": self.takeover.reason,
                "wait_left": round(self.takeover.wait_left, 3),
            },
            "start": self.start,
            "primary_here": list(self.primary_here),
            "monitors": self.monitors,
            "health": self.health,
            "jobs": self.jobs,
            "replicas": self.replicas,
            "unobserved": self.unobserved,
            "maintenance": self.maintenance,
            "acted": self.acted,
        }
