"""The client's view of its lease: a pure tracker driven by send times, votes and `now`.

The client counts quorum as held only until

    send time of the heartbeat that earned the last granted vote + lease_ms − safety margin

The server's lease started no earlier than that send time, so the client always sees the
loss before the server can let the other site in (which also waits `switch_delay`).
Only a vote answering a `want:true` heartbeat can extend the lease: `want:false` neither
grants nor renews on the server. A vote that says `granted:false` ends it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from drorch.quorum.messages import Vote


class Change(Enum):
    GAINED = "gained"
    LOST = "lost"


@dataclass(frozen=True)
class LeaseEvent:
    """A change of quorum. `at` is the monotonic instant it took effect by the client's
    reckoning: for a lease that ran out, the end of the lease (even if noticed later);
    otherwise when the vote (or the release) was handled. `held_until` is the end of the
    lease after a GAINED event."""

    change: Change
    epoch: int
    reason: str
    at: float = 0.0
    held_until: float | None = None


def default_safety_margin(lease: float) -> float:
    """A tenth of the lease, at least 50 ms: time for the loss callback to fence."""
    return max(lease / 10, 0.05)


class LeaseTracker:
    """Feed it `sent(seq, want, at)`, `vote(v, now)` and `tick(now)`; it reports changes."""

    MAX_OUTSTANDING = 64

    def __init__(self, safety_margin: float | None = None) -> None:
        self.safety_margin = safety_margin
        self.held_until: float | None = None  # monotonic; None = not held
        self.epoch = 0
        self.holder: str | None = None
        self.last_vote: Vote | None = None
        self._sent: dict[int, tuple[bool, float]] = {}

    def holds(self, now: float) -> bool:
        return self.held_until is not None and now < self.held_until

    def sent(self, seq: int, want: bool, at: float) -> None:
        """A heartbeat with `seq` left at monotonic `at`."""
        self._sent[seq] = (want, at)
        if len(self._sent) > self.MAX_OUTSTANDING:
            del self._sent[min(self._sent)]

    def forget_outstanding(self) -> None:
        """The connection dropped: votes for earlier heartbeats can no longer arrive."""
        self._sent.clear()

    def vote(self, vote: Vote, now: float) -> list[LeaseEvent]:
        """Apply one vote (received at `now`); return the gained/lost events it caused
        (a lease that ran out before this vote is reported first)."""
        expired = self.tick(now)
        event = self._apply(vote, now)
        return [e for e in (expired, event) if e is not None]

    def _apply(self, vote: Vote, now: float) -> LeaseEvent | None:
        self.last_vote = vote
        self.epoch = max(self.epoch, vote.epoch)
        self.holder = vote.holder
        sent = self._sent.pop(vote.seq, None)
        was_held = self.holds(now)
        if not vote.granted:
            self.held_until = None
            if was_held:
                return LeaseEvent(
                    Change.LOST,
                    vote.epoch,
                    f"the witness says quorum is not ours (holder {vote.holder or 'none'})",
                    at=now,
                )
            return None
        if sent is None or not sent[0]:
            # a state query, or an answer we cannot date: it proves nothing about the future
            return None
        lease = vote.lease_ms / 1000
        margin = (
            self.safety_margin if self.safety_margin is not None else default_safety_margin(lease)
        )
        until = sent[1] + lease - margin
        if until <= now:
            return None  # the vote arrived too late to count for anything
        if self.held_until is None or until > self.held_until:
            self.held_until = until
        if not was_held:
            return LeaseEvent(
                Change.GAINED,
                vote.epoch,
                f"granted at epoch {vote.epoch}, held until heartbeat send time + "
                f"{lease:g}s lease - {margin:g}s margin",
                at=now,
                held_until=self.held_until,
            )
        return None

    def tick(self, now: float) -> LeaseEvent | None:
        """Time passing: report the loss once `held_until` is reached."""
        if self.held_until is not None and now >= self.held_until:
            ended, self.held_until = self.held_until, None
            return LeaseEvent(
                Change.LOST,
                self.epoch,
                "lease ran out: no granted vote renewed it in time",
                at=ended,
            )
        return None
