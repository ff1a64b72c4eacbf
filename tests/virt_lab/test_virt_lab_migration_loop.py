"""The migration loop against a scripted job on a fake clock: which libvirt calls the
convergence policy's actions become, the deadline, and giving up on a hung abort."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from drorch.testing.clock import FakeClock
from drorch.virt.base import MigrationFailed, MigrationOptions, MigrationProgress
from drorch.virt.libvirt_migrate import (
    MigrationJob,
    failed_result,
    outcome_reason,
    run_migration,
)

MIB = 2**20


@dataclass
class ScriptedJob(MigrationJob):
    """Plays back jobStats samples, one per poll; finishes after `finish_after` polls
    (None: never by itself). An abort ends it after `abort_takes` more polls (None:
    the abort hangs)."""

    clock: FakeClock
    samples: list[dict[str, int] | None]
    finish_after: int | None = None
    abort_takes: int | None = 1
    fail_with: str | None = None
    postcopy_error: str | None = None
    calls: list[str] = field(default_factory=list)
    polls: int = 0
    aborted_at_poll: int | None = None

    def start(self) -> None:
        self.calls.append("start")

    def wait(self, seconds: float) -> bool:
        self.clock.advance(seconds)
        self.polls += 1
        if self.aborted_at_poll is not None:
            return self.abort_takes is not None and (
                self.polls - self.aborted_at_poll >= self.abort_takes
            )
        return self.finish_after is not None and self.polls > self.finish_after

    def stats(self) -> dict[str, int] | None:
        if not self.samples:
            return None
        return self.samples[min(self.polls - 1, len(self.samples) - 1)]

    def error(self) -> str | None:
        if self.aborted_at_poll is not None:
            return "operation aborted: migration out job: canceled by client"
        return self.fail_with

    def set_max_downtime(self, seconds: float) -> None:
        self.calls.append(f"max_downtime {seconds * 1000:.0f}ms")

    def start_postcopy(self) -> None:
        if self.postcopy_error:
            raise MigrationFailed(self.postcopy_error)
        self.calls.append("postcopy")

    def abort(self) -> None:
        self.calls.append("abort")
        if self.aborted_at_poll is None:
            self.aborted_at_poll = self.polls


def sample(iteration: int, remaining_mib: int, *, processed_mib: int = 10) -> dict[str, int]:
    return {
        "type": 2,
        "data_total": 128 * MIB,
        "data_processed": processed_mib * MIB,
        "data_remaining": remaining_mib * MIB,
        "memory_dirty_rate": 2048,  # pages/s
        "memory_page_size": 4096,
        "memory_iteration": iteration,
        "downtime": 300,
    }


def test_a_converging_migration_sets_the_downtime_once_and_reports_every_sample() -> None:
    clock = FakeClock()
    job = ScriptedJob(clock, [sample(1, 60), sample(2, 20), sample(3, 2)], finish_after=3)
    seen: list[MigrationProgress] = []
    outcome = run_migration(job, MigrationOptions(), clock, seen.append, poll_interval=0.5)
    assert job.calls == ["start", "max_downtime 300ms"]
    assert [p.data_remaining for p in seen] == [60 * MIB, 20 * MIB, 2 * MIB]
    assert seen[0].dirty_rate == 8 * MIB  # pages/s × page size
    assert outcome.finished and outcome.failed is None and not outcome.aborted
    assert outcome_reason(outcome) == "migrated in 2.0 s (pre-copy converged)"


def test_a_stall_raises_the_downtime_through_libvirt_step_by_step() -> None:
    clock = FakeClock()
    stalled = [sample(i, 50) for i in range(1, 8)]
    job = ScriptedJob(clock, stalled, finish_after=7)
    options = MigrationOptions(stall_iterations=2, downtime_steps=2, downtime_ceiling=1.3)
    outcome = run_migration(job, options, clock, poll_interval=1.0)
    assert job.calls == [
        "start",
        "max_downtime 300ms",
        "max_downtime 800ms",
        "max_downtime 1300ms",
    ]
    kinds = [a.kind for a in outcome.actions]
    assert kinds == ["raise_downtime", "raise_downtime", "auto_converge"]
    assert "raising max downtime 300 ms → 800 ms (step 1/2)" in outcome.actions[0].reason
    assert outcome.max_downtime == pytest.approx(1.3)


def test_no_convergence_before_the_deadline_aborts_and_says_why() -> None:
    clock = FakeClock()
    job = ScriptedJob(clock, [sample(1, 100 - i) for i in range(100)])
    options = MigrationOptions(deadline=5.0, adaptive=False, auto_converge=False)
    outcome = run_migration(job, options, clock, poll_interval=0.5)
    assert job.calls[-1] == "abort" and job.calls.count("abort") == 1
    assert outcome.aborted and outcome.finished
    reason = outcome_reason(outcome)
    assert reason.startswith("migration did not converge before the 5s deadline")
    assert "the VM keeps running at the source" in reason
    assert outcome.elapsed <= options.deadline
    result = failed_result(outcome)
    assert not result.converged and result.downtime_ms is None and result.reason == reason


def test_deadline_with_postcopy_allowed_switches_instead_of_aborting() -> None:
    clock = FakeClock()
    job = ScriptedJob(clock, [sample(1, 90 - i) for i in range(40)], finish_after=12)
    options = MigrationOptions(deadline=5.0, allow_postcopy=True, adaptive=False)
    outcome = run_migration(job, options, clock, poll_interval=0.5)
    assert "postcopy" in job.calls and "abort" not in job.calls
    assert outcome.postcopy and outcome.failed is None
    assert outcome_reason(outcome) == "migrated in 6.5 s (through post-copy)"


def test_a_refused_postcopy_switch_aborts() -> None:
    clock = FakeClock()
    job = ScriptedJob(
        clock, [sample(1, 90)], postcopy_error="postcopy not enabled for this migration"
    )
    options = MigrationOptions(deadline=3.0, allow_postcopy=True, adaptive=False)
    outcome = run_migration(job, options, clock, poll_interval=0.5)
    assert job.calls[-1] == "abort" and outcome.aborted
    assert "postcopy not enabled for this migration: aborting" in outcome.actions[-1].reason


def test_an_abort_that_hangs_is_given_up_after_the_grace_period() -> None:
    """A partitioned peer can hold libvirt's aborted job: the caller still gets control."""
    clock = FakeClock()
    job = ScriptedJob(clock, [sample(1, 100)], abort_takes=None)
    options = MigrationOptions(deadline=4.0, adaptive=False, auto_converge=False)
    started = clock.monotonic()
    outcome = run_migration(job, options, clock, poll_interval=0.5, abort_grace=3.0)
    assert clock.monotonic() - started <= options.deadline + 3.0 + 0.5
    assert outcome.aborted and not outcome.finished
    assert outcome.failed is not None and "had not finished the job 3 s later" in outcome.failed
    assert "peer unreachable?" in outcome_reason(outcome)


def test_a_failed_migration_call_is_reported_with_libvirts_message() -> None:
    clock = FakeClock()
    job = ScriptedJob(
        clock, [sample(1, 80)], finish_after=2, fail_with="internal error: client socket is closed"
    )
    outcome = run_migration(job, MigrationOptions(), clock, poll_interval=0.5)
    assert not outcome.aborted
    assert outcome_reason(outcome) == (
        "migration failed: internal error: client socket is closed (the link between the "
        "sites broke: network partition or peer down?)"
    )


def test_a_progress_callback_that_raises_aborts_the_migration_first() -> None:
    clock = FakeClock()
    job = ScriptedJob(clock, [sample(1, 80)])

    def broken(_: MigrationProgress) -> None:
        raise RuntimeError("terminal went away")

    with pytest.raises(RuntimeError, match="terminal went away"):
        run_migration(job, MigrationOptions(), clock, broken, poll_interval=0.5)
    assert job.calls[-1] == "abort"


def test_the_hard_deadline_aborts_when_statistics_stop_coming() -> None:
    """jobStats failing mid-way gives the policy nothing to judge: the deadline holds."""
    clock = FakeClock()
    job = ScriptedJob(clock, [sample(1, 90), sample(1, 80), None])
    outcome = run_migration(job, MigrationOptions(deadline=5.0), clock, poll_interval=0.5)
    assert job.calls == ["start", "max_downtime 300ms", "abort"]
    assert outcome.actions[-1].reason == "deadline 5 s passed: aborting"
    assert 5.0 <= outcome.elapsed <= 6.0


def test_a_migration_that_never_starts_is_aborted_after_the_start_timeout() -> None:
    """The destination never answers (e.g. its SYNs are dropped): no data moves, and the
    caller does not wait for the whole deadline."""
    clock = FakeClock()
    job = ScriptedJob(clock, [{"type": 2, "data_total": 0}], abort_takes=None)
    outcome = run_migration(
        job,
        MigrationOptions(deadline=600.0),
        clock,
        poll_interval=0.5,
        start_timeout=10.0,
        abort_grace=5.0,
    )
    assert job.calls == ["start", "abort"]
    assert outcome.actions[-1].reason.startswith("the migration had moved no data after 10 s")
    assert outcome.elapsed <= 16.0
    assert "libvirt may still end it on its own: check both sites" in outcome_reason(outcome)


def test_samples_before_the_job_sized_up_are_not_judged() -> None:
    """libvirt reports a job with no data yet; taking its 0 bytes remaining as the best
    so far would make the first real iteration look like a stall."""
    clock = FakeClock()
    unsized = {"type": 2, "data_total": 0, "data_remaining": 0, "memory_iteration": 0}
    job = ScriptedJob(clock, [unsized, unsized, sample(1, 100), sample(2, 60)], finish_after=4)
    seen: list[MigrationProgress] = []
    options = MigrationOptions(stall_iterations=1)
    outcome = run_migration(job, options, clock, seen.append, poll_interval=0.5)
    assert outcome.actions == ()  # no downtime raised
    assert [p.data_remaining for p in seen] == [100 * MIB, 60 * MIB]
    assert job.calls == ["start", "max_downtime 300ms"]
