"""A witness in memory: the real grant state machine (`quorum.grants.GrantBook`) behind
the agent's `LeaseSource` seam, on an injected clock, with a switch to make it
unreachable from one site (a partition) or from all (witness down)."""

from __future__ import annotations

from dataclasses import dataclass, field

from drorch.agent.view import LeaseState
from drorch.clock import Clock
from drorch.quorum.grants import GrantBook
from drorch.quorum.lease import default_safety_margin


@dataclass
class FakeWitness:
    clock: Clock
    lease: float
    switch_delay: float
    cluster: str = "c"
    down: bool = False
    cut_off: set[str] = field(default_factory=set)  # sites that cannot reach it
    outdated: dict[str, tuple[str, ...]] = field(default_factory=dict)  # site -> volumes
    # the agents' want:true/false as the real keeper sends it (off: every site always
    # asks for the lease, as the first scenario tests were written)
    honour_want: bool = False

    def __post_init__(self) -> None:
        self.book = GrantBook(self.lease, self.switch_delay)

    def source(self, site: str) -> SiteLease:
        return SiteLease(self, site)


class SiteLease:
    """One site's view: held until the last granted heartbeat + lease − margin, like the
    real `LeaseTracker`."""

    def __init__(self, witness: FakeWitness, site: str) -> None:
        self.w = witness
        self.site = site
        self.held_until: float | None = None
        self.renewed_at: float | None = None
        self.gained_at: float | None = None
        self.epoch = 0
        self.holder: str | None = None
        self.margin = default_safety_margin(witness.lease)
        self.wanted = True

    def want(self, flag: bool) -> None:
        if self.w.honour_want:
            self.wanted = flag

    def lease(self) -> LeaseState:
        now = self.w.clock.monotonic()
        reachable = not self.w.down and self.site not in self.w.cut_off
        if reachable:
            d = self.w.book.heartbeat(self.w.cluster, self.site, self.wanted, now)
            self.epoch, self.holder = d.epoch, d.holder
            if d.granted:
                if self.held_until is None or now >= self.held_until:
                    self.gained_at = now
                self.held_until = now + self.w.lease - self.margin
                self.renewed_at = now
        held = self.held_until is not None and now < self.held_until
        if not held:
            self.held_until = None
            self.gained_at = None
        return LeaseState(
            reachable=reachable,
            held=held,
            epoch=self.epoch,
            holder=self.holder,
            lease_left=max(0.0, (self.held_until or now) - now),
            renewed_at=self.renewed_at,
            gained_at=self.gained_at,
            outdated_here=self.w.outdated.get(self.site, ()) if reachable else (),
        )
