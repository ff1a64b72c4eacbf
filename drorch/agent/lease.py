"""The agent's view of the witness, from a running `quorum.keeper.LeaseKeeper`."""

from __future__ import annotations

import threading

from drorch.agent.view import LeaseState
from drorch.quorum.keeper import LeaseKeeper
from drorch.quorum.lease import LeaseEvent


class KeeperLease:
    """Adapts a LeaseKeeper to the agent's `LeaseSource`. Pass `on_gained`/`on_lost` to
    `LeaseKeeper` so the gain time is known (the witness grants a new holder only after
    the previous lease expired at least switch_delay ago)."""

    def __init__(self) -> None:
        self.keeper: LeaseKeeper | None = None
        self._lock = threading.Lock()
        self._gained_at: float | None = None

    def on_gained(self, event: LeaseEvent) -> None:
        with self._lock:
            self._gained_at = event.at

    def on_lost(self, event: LeaseEvent) -> None:
        with self._lock:
            self._gained_at = None

    def want(self, flag: bool) -> None:
        """Ask for the lease (`want:true`) or only watch it (`want:false`, which neither
        gains nor extends it): only a site that runs the resources, or has lost its peer,
        competes for the lease."""
        if self.keeper is not None:
            self.keeper.want = flag

    def lease(self) -> LeaseState:
        k = self.keeper
        if k is None:
            return LeaseState(reachable=False, held=False)
        now = k.clock.monotonic()
        t = k.tracker
        held = k.holds()
        vote = t.last_vote
        with self._lock:
            gained = self._gained_at if held else None
        return LeaseState(
            reachable=k.last_error is None and vote is not None,
            held=held,
            epoch=t.epoch,
            holder=t.holder,
            lease_left=max(0.0, (t.held_until or now) - now) if held else 0.0,
            renewed_at=t.held_until if held else None,  # moves forward on every renewal
            gained_at=gained,
            outdated_here=tuple(vote.outdated) if vote is not None else (),
        )
