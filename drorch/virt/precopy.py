"""A pure model of QEMU's pre-copy live migration over a simulated link.

Guest memory `memory` bytes; the guest dirties pages at `dirty_rate` bytes/s, at random
within a working set of `working_set` bytes (so the dirty set after t seconds is
W·(1 − e^(−r·t/W)), never more than the working set); the link carries `bandwidth`
bytes/s. Each iteration sends what the previous one left dirty; the first sends all of
memory. After each iteration the remaining dirty data would take `remaining / bandwidth`
to copy while paused (the expected downtime): when that fits the allowed max downtime,
the guest is paused and the rest copied (stop-and-copy), and pre-copy has converged.

Samples are produced every `poll_interval` simulated seconds and at every iteration
boundary, like a driver polling libvirt's jobStats; each goes through the same
`ConvergencePolicy` the libvirt driver uses, and its actions are applied:
raise_downtime, auto_converge (vCPU throttle 20 %, +10 % per iteration, up to 99 %, as
QEMU's defaults), postcopy (the guest moves at once; the rest is pulled), abort.

No clock and no I/O: the caller paces itself with the `step` of each sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from drorch.virt.base import MigrationOptions, MigrationProgress, MigrationResult
from drorch.virt.convergence import ConvergenceAction, ConvergencePolicy

SWITCHOVER_SECONDS = 0.01  # device state and the final hand-over while paused
THROTTLE_INITIAL = 0.2
THROTTLE_INCREMENT = 0.1
THROTTLE_MAX = 0.99
MAX_SAMPLES = 200_000


@dataclass(frozen=True)
class LinkModel:
    memory: int  # bytes
    dirty_rate: float  # bytes/s
    working_set: int  # bytes, <= memory
    bandwidth: float  # bytes/s, > 0


@dataclass(frozen=True)
class Sample:
    progress: MigrationProgress
    step: float  # simulated seconds since the previous sample
    action: ConvergenceAction | None  # what the policy said about it (None once done)


def _iterations(n: int) -> str:
    return f"{n} iteration" if n == 1 else f"{n} iterations"


class PrecopyAborted(Exception):
    def __init__(self, result: MigrationResult) -> None:
        super().__init__(result.reason)
        self.result = result


class PrecopySimulation:
    """Iterate `run()` for samples; afterwards `result` is set, or `run()` raised
    PrecopyAborted (the guest still runs at the source)."""

    def __init__(
        self, link: LinkModel, options: MigrationOptions, poll_interval: float = 0.5
    ) -> None:
        if link.bandwidth <= 0:
            raise ValueError("bandwidth must be positive")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.link = link
        self.options = options
        self.policy = ConvergencePolicy(options)
        self.poll_interval = poll_interval
        self.result: MigrationResult | None = None
        self.actions: list[ConvergenceAction] = []
        self._working_set = max(1, min(link.working_set, link.memory))
        self._throttle = 0.0
        self._elapsed = 0.0
        self._processed = 0.0
        self._iteration = 1
        self._to_send = float(link.memory)
        self._dirty = 0.0

    @property
    def effective_dirty_rate(self) -> float:
        return self.link.dirty_rate * (1.0 - self._throttle)

    def _dirty_after(self, dirty: float, seconds: float) -> float:
        w = self._working_set
        return w - (w - dirty) * math.exp(-self.effective_dirty_rate * seconds / w)

    def _progress(self, remaining: float, *, postcopy: bool = False) -> MigrationProgress:
        return MigrationProgress(
            elapsed=self._elapsed,
            data_processed=int(self._processed),
            data_remaining=int(remaining),
            data_total=self.link.memory,
            dirty_rate=0 if postcopy else int(self.effective_dirty_rate),
            iteration=self._iteration,
            expected_downtime_ms=round(remaining / self.link.bandwidth * 1000),
            max_downtime_ms=round(self.policy.max_downtime * 1000),
            auto_converge=self.policy.auto_converge,
            postcopy=postcopy,
        )

    def _finish(
        self, *, converged: bool, postcopy: bool, downtime: float | None, reason: str
    ) -> None:
        self.result = MigrationResult(
            converged=converged,
            postcopy=postcopy,
            total_seconds=self._elapsed,
            downtime_ms=None if downtime is None else round(downtime * 1000),
            final_max_downtime_ms=round(self.policy.max_downtime * 1000),
            iterations=self._iteration,
            data_transferred=int(self._processed),
            reason=reason,
        )

    def run(self) -> Iterator[Sample]:
        bw = self.link.bandwidth
        for _ in range(MAX_SAMPLES):
            step = min(self.poll_interval, self._to_send / bw)
            self._to_send -= step * bw
            self._processed += step * bw
            self._elapsed += step
            self._dirty = self._dirty_after(self._dirty, step)
            if self._to_send <= 0.5:
                # Iteration boundary: what was dirtied meanwhile is what remains.
                remaining = self._dirty
                if remaining / bw <= self.policy.max_downtime:
                    yield from self._stop_and_copy(remaining, step)
                    return
                self._iteration += 1
                self._to_send, self._dirty = remaining, 0.0
                if self.policy.auto_converge:
                    self._throttle = min(THROTTLE_MAX, self._throttle + THROTTLE_INCREMENT)
            progress = self._progress(self._to_send)
            action = self.policy.observe(progress)
            self.actions.append(action)
            yield Sample(progress, step, action)
            if action.kind == "abort":
                self._finish(converged=False, postcopy=False, downtime=None, reason=action.reason)
                assert self.result is not None
                raise PrecopyAborted(self.result)
            if action.kind == "auto_converge":
                self._throttle = THROTTLE_INITIAL
            if action.kind == "postcopy":
                yield from self._postcopy(action)
                return
        raise PrecopyAborted(
            MigrationResult(
                False, False, self._elapsed, None, round(self.policy.max_downtime * 1000),
                self._iteration, int(self._processed),
                f"simulation gave up after {MAX_SAMPLES} samples",
            )
        )  # fmt: skip

    def _stop_and_copy(self, remaining: float, step: float) -> Iterator[Sample]:
        downtime = remaining / self.link.bandwidth + SWITCHOVER_SECONDS
        self._processed += remaining
        self._elapsed += downtime
        reason = (
            f"converged after {_iterations(self._iteration)}: the last "
            f"{remaining / 1048576:.1f} MiB were copied in a {round(downtime * 1000)} ms "
            f"pause (max downtime {round(self.policy.max_downtime * 1000)} ms)"
        )
        self._finish(converged=True, postcopy=False, downtime=downtime, reason=reason)
        yield Sample(self._progress(0.0), step + downtime, None)

    def _postcopy(self, action: ConvergenceAction) -> Iterator[Sample]:
        bw = self.link.bandwidth
        # The guest pauses only to hand over device state, then runs at the destination;
        # every page not yet there (the current pass plus what was dirtied) is pulled.
        downtime = SWITCHOVER_SECONDS
        self._elapsed += downtime
        left = min(float(self.link.memory), self._to_send + self._dirty)
        for _ in range(MAX_SAMPLES):
            if left <= 0.5:
                break
            step = min(self.poll_interval, left / bw)
            left -= step * bw
            self._processed += step * bw
            self._elapsed += step
            yield Sample(self._progress(max(left, 0.0), postcopy=True), step, None)
        self._finish(
            converged=False,
            postcopy=True,
            downtime=downtime,
            reason=f"completed through post-copy: {action.reason}",
        )
