"""Following an async -> sync drain for `replication.set_mode`: the primary keeps
acknowledging async until its peer holds every write it lacked (ModeSwitch's contract),
so the step waits for that and draws it on the step's progress line: bytes left (the
primary's queue plus what is out of sync), the rate they go at, and what the replicator
says it waits for. The figures (bytes drained, seconds) go into the step's result."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from drorch.model.states import Role
from drorch.replication.base import ReplicationStatus, Replicator
from drorch.runbook.steps._where import status
from drorch.runbook.steps.base import StepContext, StepFailed
from drorch.wait import wait_until

POLL = 0.25
DRAIN_TIMEOUT = 600.0  # without a step `timeout:` (the shipped runbook gives 30m)
RATE_WINDOW = 5.0  # seconds of samples the shown rate is measured over
MIB = 1024 * 1024


def left_bytes(st: ReplicationStatus) -> int:
    """What a primary's peer still lacks: queued (sent, not acknowledged) + out of sync."""
    return st.lag_bytes + st.out_of_sync_bytes


def switching(st: ReplicationStatus) -> bool:
    """The replica reports a switch in progress (pyrepl: `mode_switch` in its status)."""
    return bool(st.extra.get("mode_switch"))


def mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


@dataclass
class Drain:
    """One volume's drain, as the step saw it."""

    name: str
    replicas: list[tuple[str, Replicator]]
    want: str
    start: float
    first_left: int = -1
    most_left: int = 0
    left: int = 0
    waiting_for: str = ""
    seconds: float = 0.0
    done: bool = False
    unconfirmed: str = ""  # the switch ended sync, but the peer never confirmed the backlog

    def sample(self, now: float) -> None:
        statuses = [status(rep, f"{self.name}@{node}") for node, rep in self.replicas]
        primary = next((st for st in statuses if st.role == Role.PRIMARY), statuses[0])
        self.left = left_bytes(primary)
        if self.first_left < 0:
            self.first_left = self.left
        self.most_left = max(self.most_left, self.left)
        sw = primary.extra.get("mode_switch")
        self.waiting_for = str(sw.get("waiting_for") or "") if isinstance(sw, dict) else ""
        # the primary's word: pyrepl clears its switch once the peer acknowledged MODE
        # (sent after the whole backlog), so the peer then holds everything too
        if primary.mode == self.want and not switching(primary):
            self.done = True
            self.left = 0
            self.seconds = now - self.start
            last = primary.extra.get("mode_last_switch")
            # confirmed False: the link went after the flip, before the peer acknowledged
            if (
                isinstance(last, dict)
                and last.get("to") == self.want
                and last.get("confirmed") is False
            ):
                self.unconfirmed = str(last.get("finished") or "not confirmed by the peer")

    def figures(self) -> dict[str, object]:
        return {
            "backlog_bytes": max(self.first_left, 0),
            "most_bytes_left": self.most_left,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _Rate:
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, now: float, left: int) -> float | None:
        """Bytes per second the backlog shrank by over the last RATE_WINDOW seconds."""
        self.samples.append((now, left))
        while len(self.samples) > 2 and now - self.samples[0][0] > RATE_WINDOW:
            self.samples.popleft()
        t0, left0 = self.samples[0]
        if now - t0 <= 0:
            return None
        return max(0.0, (left0 - left) / (now - t0))


def follow(ctx: StepContext, drains: list[Drain]) -> None:
    """Wait until every drain is done, drawing bytes left and the rate; StepFailed
    (drain-timeout) at the step's deadline (else DRAIN_TIMEOUT), naming what it waits
    for. The switch itself goes on in the replicator (a later run finds it done)."""
    clock = ctx.clock
    deadline = ctx.deadline if ctx.deadline is not None else clock.monotonic() + DRAIN_TIMEOUT
    rate = _Rate()
    total = {"bytes": 1}

    def drained() -> bool:
        now = clock.monotonic()
        for d in drains:
            if not d.done:
                d.sample(now)
        left = sum(d.left for d in drains)
        total["bytes"] = max(total["bytes"], sum(max(d.first_left, 0) for d in drains), left)
        busy = [d for d in drains if not d.done]
        if not busy:
            ctx.progress.update(total["bytes"], total["bytes"], "drained")
            return True
        per_s = rate.add(now, left)
        speed = f"{mib(per_s)}/s" if per_s is not None else "? MiB/s"
        eta = f", ~{left / per_s:.0f} s" if per_s else ""
        # what the switch waits for, unless it is the queue itself (that is `left`)
        why = "; ".join(f"{d.name}: {d.waiting_for}" for d in busy
                        if d.waiting_for and "queued bytes" not in d.waiting_for)  # fmt: skip
        detail = f"drain to sync: {mib(left)} left at {speed}{eta}" + (f" ({why})" if why else "")
        ctx.progress.update(total["bytes"] - left, total["bytes"], detail)
        return False

    if not wait_until(clock, drained, deadline, interval=POLL):
        busy = [d for d in drains if not d.done]
        raise StepFailed(
            "drain-timeout",
            "; ".join(
                f"{d.name}: {mib(d.left)} still to drain to {d.want}"
                + (f", waiting for {d.waiting_for}" if d.waiting_for else "")
                for d in busy
            )
            + " (the switch goes on; run the step again to follow it)",
            data={"left_bytes": {d.name: d.left for d in busy}},
        )
    unsure = [d for d in drains if d.unconfirmed]
    if unsure:  # sync from now on, but the peer may lack up to the drain's last backlog
        raise StepFailed(
            "drain-unconfirmed",
            "; ".join(
                f"{d.name}: sync from now on, but not drained: {d.unconfirmed}" for d in unsure
            )
            + " (the peer resyncs on connect; wait for check.replication_in_sync)",
            data={"unconfirmed": [d.name for d in unsure]},
        )
    for d in drains:
        ctx.progress.note(
            f"{d.name}: drained {mib(max(d.first_left, 0))} to sync in {d.seconds:.1f} s"
        )
