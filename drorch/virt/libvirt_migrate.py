"""Running one live migration: poll the job, feed the convergence policy, apply its
actions, and never outlive the deadline.

The loop (`run_migration`) talks to a `MigrationJob`, so it is tested with a scripted job
and a fake clock; `LibvirtMigrationJob` is the real one: `migrateToURI3` in a worker
thread (the call blocks until the migration ends) while this thread polls `jobStats` on
the same connection and calls `migrateSetMaxDowntime`, `migrateStartPostCopy` or
`abortJob`.

Auto-converge: libvirt 9 / QEMU 7.2 accept it only when the migration starts
(`VIR_MIGRATE_AUTO_CONVERGE`; QEMU refuses capability changes while a migration runs).
So when `options.auto_converge` is set the driver arms it at the start and QEMU throttles
the vCPUs once the guest dirties memory faster than it is sent; the policy's
"auto_converge" action then only reports the throttle QEMU applies. Without it, that
action cannot be honoured mid-flight and the migration carries on towards the deadline.
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from drorch.clock import Clock
from drorch.virt.base import (
    MigrationFailed,
    MigrationOptions,
    MigrationProgress,
    MigrationResult,
    ProgressCallback,
)
from drorch.virt.convergence import ConvergenceAction, ConvergencePolicy


class MigrationJob(ABC):
    """One started migration, seen from the orchestrator."""

    @abstractmethod
    def start(self) -> None:
        """Begin the migration without blocking."""

    @abstractmethod
    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds` for the migration call to return; True once it has."""

    @abstractmethod
    def stats(self) -> dict[str, int] | None:
        """The running job's statistics (libvirt jobStats keys); None when no job runs."""

    @abstractmethod
    def error(self) -> str | None:
        """Why the migration call failed, once it has returned; None on success."""

    @abstractmethod
    def set_max_downtime(self, seconds: float) -> None: ...

    @abstractmethod
    def start_postcopy(self) -> None: ...

    @abstractmethod
    def abort(self) -> None: ...


@dataclass(frozen=True)
class MigrationOutcome:
    """What the loop saw; the driver turns it into a result or MigrationFailed."""

    finished: bool  # the migration call returned
    failed: str | None  # its error, or why we gave up
    aborted: bool
    postcopy: bool
    elapsed: float
    last: MigrationProgress | None
    max_downtime: float
    actions: tuple[ConvergenceAction, ...]


def progress_from_stats(
    stats: dict[str, int], elapsed: float, max_downtime: float, postcopy: bool
) -> MigrationProgress:
    """One sample from libvirt's jobStats (running or completed job)."""
    page = stats.get("memory_page_size", 4096) or 4096
    return MigrationProgress(
        elapsed=elapsed,
        data_processed=stats.get("data_processed", 0),
        data_remaining=stats.get("data_remaining", 0),
        data_total=stats.get("data_total", 0),
        dirty_rate=stats.get("memory_dirty_rate", 0) * page,
        iteration=stats.get("memory_iteration", 0),
        expected_downtime_ms=stats.get("downtime", 0),
        max_downtime_ms=round(max_downtime * 1000),
        auto_converge=stats.get("auto_converge_throttle", 0) > 0,
        postcopy=postcopy,
    )


def run_migration(
    job: MigrationJob,
    options: MigrationOptions,
    clock: Clock,
    progress: ProgressCallback | None = None,
    *,
    poll_interval: float = 0.2,
    abort_grace: float = 15.0,
    start_timeout: float = 30.0,
) -> MigrationOutcome:
    """Drive `job` to its end. The policy may raise the downtime, note auto-converge,
    switch to post-copy or abort; at `options.deadline` the job is aborted regardless,
    and so is a job that has moved no data after `start_timeout` (the destination never
    answered). After `abort_grace` more seconds we stop waiting for libvirt (a
    partitioned peer can hold the aborted job until its keepalive gives up)."""
    policy = ConvergencePolicy(options)
    start = clock.monotonic()
    limits = _Limits(poll_interval, abort_grace, min(start_timeout, options.deadline))
    job.start()
    try:
        return _drive(job, policy, options, clock, progress, start, limits)
    except BaseException:
        # a failing progress callback (or ^C) must not leave a migration running behind
        job.abort()
        job.wait(abort_grace)
        raise


@dataclass(frozen=True)
class _Limits:
    poll_interval: float
    abort_grace: float
    start_timeout: float


def _drive(
    job: MigrationJob,
    policy: ConvergencePolicy,
    options: MigrationOptions,
    clock: Clock,
    progress: ProgressCallback | None,
    start: float,
    limits: _Limits,
) -> MigrationOutcome:
    poll_interval, abort_grace = limits.poll_interval, limits.abort_grace
    actions: list[ConvergenceAction] = []
    downtime_set = False
    last: MigrationProgress | None = None
    aborted_at: float | None = None
    failed: str | None = None
    while True:
        if job.wait(poll_interval):
            break
        elapsed = clock.monotonic() - start
        if aborted_at is not None:
            if elapsed - aborted_at > abort_grace:
                failed = (
                    f"aborted after {aborted_at:.1f} s but libvirt had not finished the "
                    f"job {abort_grace:g} s later (peer unreachable?); libvirt may still "
                    "end it on its own: check both sites before acting"
                )
                break
            continue
        stats = job.stats()
        # a job that has not sized up yet (no data_total) says nothing about convergence
        if stats and stats.get("data_total", 0) > 0:
            if not downtime_set:  # needs the job to exist; QEMU's default is 300 ms
                job.set_max_downtime(policy.max_downtime)
                downtime_set = True
            last = progress_from_stats(stats, elapsed, policy.max_downtime, policy.postcopy)
            if progress is not None:
                progress(last)
            action = policy.observe(last)
            if action.kind != "continue":
                actions.append(action)
            if action.kind == "raise_downtime" and action.max_downtime is not None:
                job.set_max_downtime(action.max_downtime)
            elif action.kind == "postcopy":
                try:
                    job.start_postcopy()
                except MigrationFailed as exc:
                    actions.append(ConvergenceAction("abort", None, f"{exc}: aborting"))
                    job.abort()
                    aborted_at = elapsed
                    continue
            elif action.kind == "abort":
                job.abort()
                aborted_at = elapsed
                continue
        if last is None and elapsed >= limits.start_timeout:
            actions.append(
                ConvergenceAction(
                    "abort",
                    None,
                    f"the migration had moved no data after {limits.start_timeout:g} s "
                    "(destination libvirtd or the network between the sites not answering?)"
                    ": aborting",
                )
            )
            job.abort()
            aborted_at = elapsed
            continue
        if elapsed >= options.deadline and not policy.postcopy:
            actions.append(
                ConvergenceAction(
                    "abort", None, f"deadline {options.deadline:g} s passed: aborting"
                )
            )
            job.abort()
            aborted_at = elapsed
    elapsed = clock.monotonic() - start
    finished = failed is None
    if finished:
        failed = job.error()
    return MigrationOutcome(
        finished=finished,
        failed=failed,
        aborted=aborted_at is not None,
        postcopy=policy.postcopy,
        elapsed=elapsed,
        last=last,
        max_downtime=policy.max_downtime,
        actions=tuple(actions),
    )


# libvirt/QEMU messages that mean the connection between the sites broke
_LINK_LOST = (
    "socket is closed",
    "unable to read from socket",
    "unable to write to socket",
    "connection reset",
    "broken pipe",
    "keepalive",
    "no route to host",
    "connection refused",
    "connection timed out",
    "cannot recv data",
)


def explain(error: str) -> str:
    """libvirt's message, with what it means for the operator when we know."""
    if any(marker in error.lower() for marker in _LINK_LOST):
        return f"{error} (the link between the sites broke: network partition or peer down?)"
    return error


def outcome_reason(outcome: MigrationOutcome) -> str:
    """One line for the operator: the deciding action's reason, else the error."""
    deciding = [a for a in outcome.actions if a.kind in ("abort", "postcopy")]
    if outcome.aborted and deciding:
        reason = deciding[0].reason
        if outcome.failed and "aborted" not in outcome.failed.lower():
            reason += f"; libvirt: {explain(outcome.failed)}"
        elif outcome.failed and not outcome.finished:
            reason += f"; {outcome.failed}"
        return reason
    if outcome.failed:
        return f"migration failed: {explain(outcome.failed)}"
    how = "through post-copy" if outcome.postcopy else "pre-copy converged"
    return f"migrated in {outcome.elapsed:.1f} s ({how})"


def failed_result(outcome: MigrationOutcome) -> MigrationResult:
    last = outcome.last
    return MigrationResult(
        converged=False,
        postcopy=outcome.postcopy,
        total_seconds=outcome.elapsed,
        downtime_ms=None,
        final_max_downtime_ms=round(outcome.max_downtime * 1000),
        iterations=last.iteration if last else 0,
        data_transferred=last.data_processed if last else 0,
        reason=outcome_reason(outcome),
    )


class LibvirtMigrationJob(MigrationJob):
    """`migrateToURI3` in a worker thread; polling and control on the calling thread."""

    def __init__(self, dom: Any, dconnuri: str, params: dict[str, Any], flags: int) -> None:
        from drorch.virt.libvirt_conn import libvirt_module

        self._lv = libvirt_module()
        self._dom = dom
        self._dconnuri = dconnuri
        self._params = params
        self._flags = flags
        self._done = threading.Event()
        self._error: str | None = None
        self._thread = threading.Thread(
            target=self._migrate, name=f"migrate {dom.name()}", daemon=True
        )

    def _migrate(self) -> None:
        from drorch.virt.libvirt_conn import describe

        try:
            self._dom.migrateToURI3(self._dconnuri, self._params, self._flags)
        except self._lv.libvirtError as exc:
            self._error = describe(exc)
        finally:
            self._done.set()

    def start(self) -> None:
        self._thread.start()

    def wait(self, seconds: float) -> bool:
        # A real wait on the worker thread (I/O), so completion is seen at once.
        return self._done.wait(seconds)

    def stats(self) -> dict[str, int] | None:
        try:
            stats: dict[str, int] = self._dom.jobStats()
        except self._lv.libvirtError:
            return None
        if stats.get("type", 0) == self._lv.VIR_DOMAIN_JOB_NONE:
            return None
        return stats

    def error(self) -> str | None:
        return self._error

    def set_max_downtime(self, seconds: float) -> None:
        # the job may have ended between the poll and this call
        with contextlib.suppress(self._lv.libvirtError):
            self._dom.migrateSetMaxDowntime(max(1, round(seconds * 1000)), 0)

    def start_postcopy(self) -> None:
        try:
            self._dom.migrateStartPostCopy(0)
        except self._lv.libvirtError as exc:
            raise MigrationFailed(f"could not switch to post-copy: {exc}") from None

    def abort(self) -> None:
        # already finished or failing: the migration call reports it
        with contextlib.suppress(self._lv.libvirtError):
            self._dom.abortJob()
