"""The live-migration convergence policy: PURE, shared by every hypervisor driver.

A driver feeds it each progress sample (libvirt's jobStats, or one step of the simulated
pre-copy) and applies the action it returns. Nothing here touches a clock or a socket.

The policy, in order of precedence:

1. **Deadline.** When `elapsed + switch_margin + expected downtime` reaches the operator's
   deadline: switch to post-copy if allowed, else abort ("migration did not converge").
2. **Stall.** When `data_remaining` has not fallen 2 % below its lowest value for
   `stall_iterations` pre-copy iterations: raise the allowed downtime one step (of
   `downtime_steps` equal steps up to `downtime_ceiling`, as KubeVirt does) when
   `adaptive`; once at the ceiling (or not adaptive), turn on auto-converge.
3. Otherwise continue.

Several samples may belong to one iteration (libvirt is polled); only a new iteration
counts towards a stall.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from drorch.virt.base import MigrationOptions, MigrationProgress

ActionKind = Literal["continue", "raise_downtime", "auto_converge", "postcopy", "abort"]

MIB = 1024 * 1024
# data_remaining must fall at least this fraction below its lowest value so far to count
# as progress; a pre-copy creeping towards its fixed point is stalled, not converging.
MIN_PROGRESS = 0.02


@dataclass(frozen=True)
class ConvergenceAction:
    kind: ActionKind
    max_downtime: float | None  # seconds, for raise_downtime
    reason: str  # human readable


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)} ms"


class ConvergencePolicy:
    """One migration's convergence decisions. Create a new one per migration."""

    def __init__(self, options: MigrationOptions) -> None:
        if options.max_downtime <= 0:
            raise ValueError("max_downtime must be positive")
        if options.downtime_steps < 1:
            raise ValueError("downtime_steps must be at least 1")
        if options.stall_iterations < 1:
            raise ValueError("stall_iterations must be at least 1")
        self.options = options
        self.max_downtime = options.max_downtime
        self.ceiling = max(options.downtime_ceiling, options.max_downtime)
        self.steps_taken = 0
        self.auto_converge = False
        self.postcopy = False
        self.finished = False
        self._best_remaining: int | None = None
        self._stalled = 0
        self._last_iteration = -1

    def _step_size(self) -> float:
        return (self.ceiling - self.options.max_downtime) / self.options.downtime_steps

    def _deadline_near(self, progress: MigrationProgress) -> bool:
        expected = progress.expected_downtime_ms / 1000.0
        return progress.elapsed + self.options.switch_margin + expected >= self.options.deadline

    def observe(self, progress: MigrationProgress) -> ConvergenceAction:
        """The action to take after this sample. After "postcopy" the policy only
        continues; after "abort" it keeps answering "abort"."""
        if self.finished:
            return ConvergenceAction("abort", None, "migration already aborted")
        if self.postcopy:
            return ConvergenceAction(
                "continue", None, f"post-copy: {_mib(progress.data_remaining)} left to pull"
            )
        if self._deadline_near(progress):
            return self._at_deadline(progress)
        stall = self._track_stall(progress)
        if stall is not None:
            return stall
        return ConvergenceAction(
            "continue",
            None,
            f"iteration {progress.iteration}: {_mib(progress.data_remaining)} remaining, "
            f"expected downtime {progress.expected_downtime_ms} ms, "
            f"max {_ms(self.max_downtime)}",
        )

    def _at_deadline(self, progress: MigrationProgress) -> ConvergenceAction:
        left = max(self.options.deadline - progress.elapsed, 0.0)
        state = (
            f"{_mib(progress.data_remaining)} still remaining after {progress.iteration} "
            f"iterations, expected downtime {progress.expected_downtime_ms} ms > max "
            f"{_ms(self.max_downtime)}"
        )
        if self.options.allow_postcopy:
            self.postcopy = True
            return ConvergenceAction(
                "postcopy",
                None,
                f"deadline {self.options.deadline:g}s is {left:.1f}s away: switching to "
                f"post-copy ({state})",
            )
        self.finished = True
        return ConvergenceAction(
            "abort",
            None,
            f"migration did not converge before the {self.options.deadline:g}s deadline "
            f"({state}); post-copy not allowed, aborting: the VM keeps running at the source",
        )

    def _track_stall(self, progress: MigrationProgress) -> ConvergenceAction | None:
        if progress.iteration == self._last_iteration:
            return None
        self._last_iteration = progress.iteration
        best = self._best_remaining
        if best is None or progress.data_remaining < best * (1.0 - MIN_PROGRESS):
            self._best_remaining = progress.data_remaining
            self._stalled = 0
            return None
        self._stalled += 1
        if self._stalled < self.options.stall_iterations:
            return None
        self._stalled = 0
        why = (
            f"data remaining has not fallen for {self.options.stall_iterations} iterations "
            f"({_mib(progress.data_remaining)} at iteration {progress.iteration})"
        )
        if self.options.adaptive and self.steps_taken < self.options.downtime_steps:
            self.steps_taken += 1
            old = self.max_downtime
            if self.steps_taken == self.options.downtime_steps:
                self.max_downtime = self.ceiling
            else:
                self.max_downtime = self.options.max_downtime + self._step_size() * (
                    self.steps_taken
                )
            return ConvergenceAction(
                "raise_downtime",
                self.max_downtime,
                f"{why}: raising max downtime {_ms(old)} → {_ms(self.max_downtime)} "
                f"(step {self.steps_taken}/{self.options.downtime_steps})",
            )
        if self.options.auto_converge and not self.auto_converge:
            self.auto_converge = True
            where = (
                f"at the {_ms(self.ceiling)} ceiling"
                if self.options.adaptive
                else f"at {_ms(self.max_downtime)} (adaptive downtime off)"
            )
            return ConvergenceAction(
                "auto_converge",
                None,
                f"{why} {where}: turning on auto-converge (throttles the guest's vCPUs)",
            )
        return ConvergenceAction(
            "continue",
            None,
            f"{why}; nothing left to try before the {self.options.deadline:g}s deadline",
        )
