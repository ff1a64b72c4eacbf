"""Who holds quorum: a pure state machine, driven by monotonic `now` values.

Rules (docs/quorum-protocol.md, "Rules the server keeps"):

- per cluster, at most one site holds a live lease (`now < lease_until`) at any instant;
- a `want:true` heartbeat is granted when no live lease exists and either the cluster never
  had a holder, the previous holder released on purpose, or the last lease expired at least
  `switch_delay` ago (whoever asks, including the site that lapsed);
- every grant that is not a renewal of a live lease adds exactly 1 to the cluster's epoch;
- the holder's `want:true` renews its lease to now + lease; `want:false` changes nothing;
- after a restart, nothing new is granted until `grace_until`; only the recorded holder may
  renew meanwhile (keeping its epoch); a recorded holder that did not renew counts, when the
  grace ends, as having lapsed more than `switch_delay` ago; a release does not end grace.

Every answer carries a reason a person can read, and says whether the durable state changed
(the server persists it *before* sending the vote).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass
class ClusterLease:
    """One cluster's grant state. `holder` is the recorded holder (granted, not released);
    its lease is live while `now < lease_until`. `lease_until` is None when the holder has no
    lease on this daemon's clock yet (recorded before a restart, not renewed since)."""

    epoch: int = 0
    holder: str | None = None
    lease_until: float | None = None
    # the earliest instant a new grant may be made (after a lapse: expiry + switch delay)
    free_after: float | None = None


class Decision(NamedTuple):
    """The vote to send and why. `persist` is True when epoch/holder changed.
    (A NamedTuple: immutable, and cheap to build ten thousand times a second.)"""

    granted: bool
    epoch: int
    holder: str | None
    persist: bool
    reason: str


@dataclass(frozen=True)
class DurableLease:
    """What survives a restart, per cluster."""

    epoch: int
    holder: str | None


class GrantBook:
    """The grant state of every cluster one daemon serves."""

    def __init__(
        self,
        lease: float,
        switch_delay: float,
        durable: dict[str, DurableLease] | None = None,
        grace_until: float | None = None,
    ) -> None:
        """`lease`/`switch_delay` in seconds. `durable` is the recorded state (None or {} for
        a fresh state); `grace_until` the monotonic instant restart grace ends (None: none)."""
        if lease <= 0 or switch_delay < 0:
            raise ValueError("lease must be > 0 and switch_delay >= 0")
        self.lease = lease
        self.switch_delay = switch_delay
        self.grace_until = grace_until
        self.clusters: dict[str, ClusterLease] = {
            name: ClusterLease(epoch=d.epoch, holder=d.holder)
            for name, d in (durable or {}).items()
        }

    def _cluster(self, name: str) -> ClusterLease:
        state = self.clusters.get(name)
        if state is None:
            state = self.clusters[name] = ClusterLease()
        return state

    def in_grace(self, now: float) -> bool:
        return self.grace_until is not None and now < self.grace_until

    def _settle(self, state: ClusterLease, now: float) -> None:
        """Apply what time alone changes: the end of grace, and a lease running out."""
        if self.grace_until is not None and now >= self.grace_until:
            self.grace_until = None
        if self.in_grace(now):
            return
        if state.holder is not None and state.lease_until is None:
            # recorded before the restart and never renewed during grace: counts as lapsed
            # more than switch_delay ago, so the cluster is free now
            state.lease_until = now - self.switch_delay
            state.free_after = now
        elif state.lease_until is not None and now >= state.lease_until:
            state.free_after = state.lease_until + self.switch_delay

    def live_holder(self, cluster: str, now: float) -> str | None:
        """The site with a live lease, or during grace the recorded holder, else None."""
        state = self.clusters.get(cluster)
        if state is None:
            return None
        self._settle(state, now)
        if self.in_grace(now):
            return state.holder
        if state.holder is not None and state.lease_until is not None and now < state.lease_until:
            return state.holder
        return None

    def holds(self, cluster: str, site: str, now: float) -> int | None:
        """The epoch if `site` holds a live lease on this daemon's clock (during restart
        grace only once it has renewed), else None. Outdate records need this."""
        state = self.clusters.get(cluster)
        if state is None or state.holder != site:
            return None
        self._settle(state, now)
        if state.holder == site and state.lease_until is not None and now < state.lease_until:
            return state.epoch
        return None

    def _vote(
        self, state: ClusterLease, site: str, now: float, persist: bool, why: str
    ) -> Decision:
        live = (
            state.holder is not None and state.lease_until is not None and now < state.lease_until
        )
        holder = state.holder if (live or self.in_grace(now)) else None
        granted = live and state.holder == site
        return Decision(granted, state.epoch, holder, persist, why)

    def heartbeat(self, cluster: str, site: str, want: bool, now: float) -> Decision:
        """Answer one heartbeat from `site` of `cluster` at monotonic `now`."""
        state = self.clusters.get(cluster)
        if state is not None and want and self.grace_until is None:
            until = state.lease_until
            if until is not None and now < until:  # a live lease: the steady state
                holder = state.holder
                if holder == site:
                    state.lease_until = now + self.lease
                    return Decision(True, state.epoch, site, False, f"{site} renewed its lease")
                return Decision(
                    False,
                    state.epoch,
                    holder,
                    False,
                    f"{holder} holds a live lease for another {until - now:.3f}s",
                )
        state = self._cluster(cluster)
        self._settle(state, now)
        live = state.lease_until is not None and now < state.lease_until
        if not want:
            return self._vote(state, site, now, False, "state query (want:false): nothing changes")
        if self.in_grace(now):
            if state.holder == site:
                state.lease_until = now + self.lease
                return self._vote(
                    state, site, now, False, f"recorded holder {site} renewed during restart grace"
                )
            left = (self.grace_until or now) - now
            return self._vote(
                state,
                site,
                now,
                False,
                f"restart grace: only the recorded holder {state.holder or '(none)'} may renew "
                f"for another {left:.3f}s",
            )
        if live and state.holder == site:
            state.lease_until = now + self.lease
            return self._vote(state, site, now, False, f"{site} renewed its lease")
        if live:
            left = (state.lease_until or now) - now
            return self._vote(
                state,
                site,
                now,
                False,
                f"{state.holder} holds a live lease for another {left:.3f}s",
            )
        if state.free_after is not None and now < state.free_after:
            return self._vote(
                state,
                site,
                now,
                False,
                f"lease of {state.holder} lapsed; switch delay leaves "
                f"{state.free_after - now:.3f}s before a new grant",
            )
        previous = state.holder
        if state.free_after is None and previous is None and state.epoch == 0:
            why = "the cluster never had a holder"
        elif previous is None:
            why = "the previous holder released quorum on purpose"
        else:
            why = f"the lease of {previous} expired at least the switch delay ago"
        state.epoch += 1
        state.holder = site
        state.lease_until = now + self.lease
        state.free_after = None
        return self._vote(
            state, site, now, True, f"granted to {site} at epoch {state.epoch}: {why}"
        )

    def release(self, cluster: str, site: str, now: float) -> Decision:
        """The holder gives quorum up on purpose; from anyone else it changes nothing."""
        state = self._cluster(cluster)
        self._settle(state, now)
        if state.holder != site:
            return self._vote(
                state, site, now, False, f"release from {site}, which does not hold quorum: ignored"
            )
        state.holder = None
        state.lease_until = None
        state.free_after = None
        why = f"{site} released quorum at epoch {state.epoch}"
        if self.in_grace(now):
            why += "; restart grace still holds back new grants"
        return self._vote(state, site, now, True, why)

    def durable(self) -> dict[str, DurableLease]:
        """The state to persist."""
        return {n: DurableLease(s.epoch, s.holder) for n, s in sorted(self.clusters.items())}
