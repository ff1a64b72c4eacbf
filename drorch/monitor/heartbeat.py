"""The type-3 VM heartbeat: is the guest's application still beating? PURE.

A guest prints `HEARTBEAT <n>` lines on its serial console, n rising by one per beat
(the lab guest: once a second). `HeartbeatParser` turns console bytes into counter values
(sans-I/O: partial lines, CRLF, interleaved kernel messages and binary garbage are fine);
`HeartbeatTracker` judges them. `drorch.monitor.serial_log` does the file reading.

What "rising" means (the `HeartbeatPolicy`):

- A beat counts when its n is greater than the previous one; a repeated n is ignored.
- The heartbeat is HEALTHY when at least `min_beats` counted beats were seen within the
  last `window` seconds (seen = when the monitor read them; the guest's log has no
  wall-clock time).
- The counter going back (n lower than the previous beat, or not above `baseline`) means
  the guest restarted (a new boot counts from 1). After a live migration the guest must
  continue: with `expect_continuation` that is a FAILURE that stays failed. After a cold
  failover the guest boots afresh: without it, counting restarts at the new n.
- Until `startup_grace` has passed since the tracker started, too few beats is WAITING,
  not FAILED (the guest may still be booting, or its log not yet created).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

# No look-behind in the pattern: it would stop the engine skipping ahead to the literal
# (8x slower); the byte before a match is checked by hand instead.
BEAT = re.compile(rb"HEARTBEAT (\d{1,18})(?![0-9])")
WORD_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
MAX_LINE = 4096  # a "line" longer than this without a newline is garbage and dropped


class HeartbeatParser:
    """Feed console bytes, get the heartbeat counters of the complete lines."""

    def __init__(self) -> None:
        self._partial = b""
        self.dropped_bytes = 0

    def feed(self, data: bytes) -> list[int]:
        buffer = self._partial + data
        end = buffer.rfind(b"\n") + 1  # complete lines end here
        complete, self._partial = buffer[:end], buffer[end:]
        if len(self._partial) > MAX_LINE:
            self.dropped_bytes += len(self._partial)
            self._partial = b""
        # One scan over all complete lines; a match cannot span a newline.
        return [
            int(found.group(1))
            for found in BEAT.finditer(complete)
            if found.start() == 0 or complete[found.start() - 1] not in WORD_BYTES
        ]

    def reset(self) -> None:
        """Forget a partial line (the file was rotated or truncated under us)."""
        self._partial = b""


class HeartbeatStatus(StrEnum):
    HEALTHY = "healthy"
    WAITING = "waiting"
    FAILED = "failed"


@dataclass(frozen=True)
class HeartbeatPolicy:
    min_beats: int = 3
    window: float = 10.0  # seconds
    startup_grace: float = 30.0  # seconds

    def __post_init__(self) -> None:
        if self.min_beats < 1 or self.window <= 0 or self.startup_grace < 0:
            raise ValueError("need min_beats >= 1, window > 0 and startup_grace >= 0")


def policy_for(interval: float, *, min_beats: int = 3) -> HeartbeatPolicy:
    """The policy for a configured `type: heartbeat` monitor checked every `interval`:
    `min_beats` rising beats within twice the interval (at least 10 s), and a start-up
    grace of three windows."""
    window = max(2.0 * interval, 10.0)
    return HeartbeatPolicy(min_beats=min_beats, window=window, startup_grace=3.0 * window)


@dataclass(frozen=True)
class HeartbeatVerdict:
    status: HeartbeatStatus
    reason: str
    last_n: int | None
    beats_in_window: int
    restarts: int = 0

    @property
    def healthy(self) -> bool:
        return self.status is HeartbeatStatus.HEALTHY


@dataclass
class _Beat:
    n: int
    seen_at: float


@dataclass
class HeartbeatTracker:
    """The beats seen so far and the verdict on them. No I/O: the caller passes `now`."""

    started_at: float
    policy: HeartbeatPolicy = field(default_factory=HeartbeatPolicy)
    baseline: int | None = None  # the last n seen before a hand-over, if any
    expect_continuation: bool = False
    restarts: int = 0
    violation: str | None = None
    _run: list[_Beat] = field(default_factory=list)

    @property
    def last_n(self) -> int | None:
        return self._run[-1].n if self._run else self.baseline

    def observe(self, counters: list[int], now: float) -> None:
        for n in counters:
            previous = self.last_n
            if previous is not None and n == previous:
                continue
            if previous is not None and n < previous:
                self._restarted(previous, n, now)
                continue
            self._run.append(_Beat(n, now))
        horizon = now - self.policy.window
        # Keep only what the window can still use (bounded memory), but never the last beat.
        while len(self._run) > 1 and self._run[0].seen_at < horizon:
            self._run.pop(0)

    def _restarted(self, previous: int, n: int, now: float) -> None:
        self.restarts += 1
        if self.expect_continuation and self.violation is None:
            self.violation = (
                f"heartbeat went back from {previous} to {n}: the guest restarted instead "
                "of continuing after the hand-over"
            )
        self._run = [_Beat(n, now)]

    def verdict(self, now: float) -> HeartbeatVerdict:
        policy = self.policy
        recent = [b for b in self._run if b.seen_at >= now - policy.window]
        counted = len(recent)

        def make(status: HeartbeatStatus, reason: str) -> HeartbeatVerdict:
            return HeartbeatVerdict(status, reason, self.last_n, counted, self.restarts)

        if self.violation is not None:
            return make(HeartbeatStatus.FAILED, self.violation)
        if counted >= policy.min_beats:
            reason = (
                f"heartbeat rising: {counted} beats in the last {policy.window:g} s, "
                f"n {recent[0].n} → {recent[-1].n}"
            )
            if self.restarts:
                reason += f" (counter restarted {self.restarts}× : the guest rebooted)"
            return make(HeartbeatStatus.HEALTHY, reason)
        in_grace = now - self.started_at < policy.startup_grace
        if in_grace:
            left = policy.startup_grace - (now - self.started_at)
            return make(
                HeartbeatStatus.WAITING,
                f"waiting for heartbeats: {counted} of {policy.min_beats} in the last "
                f"{policy.window:g} s ({left:.1f} s of the start-up grace left)",
            )
        if not self._run:
            return make(
                HeartbeatStatus.FAILED,
                f"no heartbeat within the {policy.startup_grace:g} s start-up grace",
            )
        silent = now - self._run[-1].seen_at
        if silent > policy.window:
            return make(
                HeartbeatStatus.FAILED,
                f"no new heartbeat for {silent:.1f} s (last n={self._run[-1].n}; "
                f"window {policy.window:g} s)",
            )
        return make(
            HeartbeatStatus.FAILED,
            f"heartbeat too slow: {counted} of {policy.min_beats} beats in the last "
            f"{policy.window:g} s (last n={self._run[-1].n})",
        )
