"""The hurricane runbook's `hand-over-quorum` step (quorum.release) retries a witness
that does not answer (witness-unreachable), bounded by attempts and a total deadline: by
then the VMs run at the target, so a transient witness error must not stop the run with
quorum left at the source. On the sim lab, with the simulated witness really down."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.runbook.load import parse_runbook_text
from drorch.runbook.steps import _witness
from tests.conftest import REPO
from tests.runbook.faults import HURRICANE, Injector, run
from tests.runbook.steps_lab import SimLab

STEP = "hand-over-quorum"
RETRYING = "attempt {} failed (witness-unreachable); retrying"


def holder(lab: SimLab) -> object:
    return lab.observed()["holder"]


def running(lab: SimLab) -> set[str]:
    return {f"{vm}@{site}" for (vm, site), st in lab.vms().items() if st == "running"}


def test_the_step_retries_only_the_witness_code_within_a_deadline() -> None:
    name = HURRICANE[0]
    step = parse_runbook_text((REPO / "runbooks" / name).read_text(), name).step(STEP)
    assert step is not None and step.action == "quorum.release"
    assert step.retry.codes == ("witness-unreachable",)
    assert step.retry.attempts > 1 and step.retry.deadline is not None
    assert step.retry.deadline <= 60.0


def test_a_witness_down_for_two_attempts_is_retried_and_the_move_completes(
    tmp_path: Path,
) -> None:
    lab = SimLab(tmp_path)
    injector = Injector(0, witness_down=STEP, witness_down_for=2)
    summary = run(lab, *HURRICANE, injector)
    log = "\n".join(lab.output.lines)
    assert summary.status == "succeeded", log
    assert injector.ran.count(STEP) == 3
    assert RETRYING.format(1) in log and RETRYING.format(2) in log
    assert RETRYING.format(3) not in log
    assert holder(lab) == "B"
    assert running(lab) and all(k.endswith("@B") for k in running(lab)), lab.vms()


def test_a_witness_lost_between_release_and_acquire_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst moment: A's lease is released, then the witness stops answering before
    B takes it (nobody holds quorum). The retry finds no holder and gives it to B."""
    lab = SimLab(tmp_path)
    real = _witness.write_sim
    dropped: list[int] = []

    def release_then_drop(d: Path, site: str | None, epoch: int) -> None:
        real(d, site, epoch)
        if site is None and not dropped:
            dropped.append(epoch)
            (d / "sim-witness.down").write_text("1\n")

    monkeypatch.setattr(_witness, "write_sim", release_then_drop)
    injector = Injector(0, witness_down=STEP, witness_down_for=0)  # back at each attempt
    summary = run(lab, *HURRICANE, injector)
    log = "\n".join(lab.output.lines)
    assert summary.status == "succeeded", log
    assert dropped and injector.ran.count(STEP) == 2
    assert RETRYING.format(1) in log
    assert holder(lab) == "B"


def test_a_lasting_outage_fails_the_step_with_the_reason_once_the_deadline_passes(
    tmp_path: Path,
) -> None:
    lab = SimLab(tmp_path)
    injector = Injector(0, witness_down=STEP, witness_down_for=-1)
    summary = run(lab, *HURRICANE, injector)
    log = "\n".join(lab.output.lines)
    assert summary.status == "failed", log
    assert summary.failed_code == "witness-unreachable"
    assert "the simulated witness is down" in summary.message, summary.message
    attempts = injector.ran.count(STEP)
    name = HURRICANE[0]
    step = parse_runbook_text((REPO / "runbooks" / name).read_text(), name).step(STEP)
    assert step is not None and step.retry.deadline is not None
    assert 1 < attempts <= step.retry.attempts
    assert RETRYING.format(attempts - 1) in log
    assert injector.ran[-1] == STEP  # the run stopped there: verify never ran
    backoffs = lab.clock.sleeps[-(attempts - 1) :]  # the fake clock's waits between them
    assert backoffs[0] == step.retry.backoff
    assert sum(backoffs) <= step.retry.deadline  # bounded by the total deadline
    (lab.dir / ".drorch-state" / "sim-witness.down").unlink()
    assert holder(lab) == "A"  # quorum not handed over: the operator retries the step
    assert all(k.endswith("@B") for k in running(lab)), lab.vms()
