"""A run that fails midway and rolls back ends in the state it started from.

Table-driven failure injection on the simulated lab (tests/runbook/faults.py): for every
step of the shipped hurricane-planned-migration and the live and cold drills, a failure
is injected before the step acts, and again after it took effect (a step that did its
work and then failed, e.g. its confirmation timed out). Wherever the runbook says
`on_failure: rollback`, the end state must equal the start state: where each VM runs,
every replica's role, disk, connection, mode and two-primaries setting (so never two
primaries), the services, and the quorum holder. Plus the two rollbacks found broken:
re-promoting the demoted site needs an epoch above every one seen (a fresh witness
grant), and a live migration whose cold fallback fails midway leaves the guest running
nowhere, so its undo starts it again at the source, alive."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from drorch.runbook.journal import Journal
from drorch.runbook.load import parse_runbook_text
from drorch.runbook.model import OnFailure
from drorch.runbook.steps.base import StepFailed
from drorch.virt.base import HypervisorError
from drorch.virt.sim_world import crash_vm
from tests.conftest import REPO
from tests.runbook.faults import COLD, HURRICANE, LIVE, Injector, Killed, resume, run
from tests.runbook.steps_lab import SimLab

# lab/sim.yaml as shipped (both volumes sync), and with dbdata async (the hurricane
# runbook switches it to sync first; a rollback must put it back to async)
ASYNC_DB = {"    mode: sync\n    size: 128MiB": "    mode: async\n    size: 128MiB"}
Variant = tuple[str, str, dict[str, object], dict[str, str], int]
# id, runbook, params, edits of lab/sim.yaml, main-phase step runs of a successful run
VARIANTS: list[Variant] = [
    ("hurricane", *HURRICANE, {}, 28),
    ("hurricane-async-db", *HURRICANE, ASYNC_DB, 28),
    ("live", *LIVE, {}, 48),
    ("cold", *COLD, {}, 47),
]
CASES = [(v, k, when) for v in VARIANTS for k in range(1, v[4] + 1) for when in ("before", "after")]


def state(lab: SimLab) -> dict[str, object]:
    seen = lab.observed()
    reps = seen["replicas"]
    assert isinstance(reps, dict)
    vms = seen["vms"]
    assert isinstance(vms, dict)
    return {
        "replicas": {
            k: (r["role"], r["disk"], r["connection"], r["mode"], r["extra"]["two_primaries"])
            for k, r in reps.items()
        },
        "running": sorted(k for k, st in vms.items() if st in ("running", "paused")),
        "services": seen["services"],
        "holder": seen["holder"],
    }


def _top(name: str, key: str) -> OnFailure:
    rb = parse_runbook_text((REPO / "runbooks" / name).read_text(), name)
    step = rb.step(key.split("/")[0])
    assert step is not None, key
    return step.on_failure


@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_the_table_covers_every_step(tmp_path: Path, variant: Variant) -> None:
    _, name, params, edits, runs = variant
    lab = SimLab(tmp_path, edits)
    injector = Injector(0)
    assert run(lab, name, params, injector).status == "succeeded"
    assert len(injector.ran) == runs, injector.ran


@pytest.mark.parametrize(
    ("variant", "k", "when"), CASES, ids=[f"{c[0][0]}-{c[1]}-{c[2]}" for c in CASES]
)
def test_a_failure_after_any_step_rolls_back_to_the_start_state(
    tmp_path: Path, variant: Variant, k: int, when: str
) -> None:
    _, name, params, edits, _ = variant
    lab = SimLab(tmp_path, edits)
    start = state(lab)
    injector = Injector(k, when)
    summary = run(lab, name, params, injector)
    failed = injector.failed
    assert failed, injector.ran
    log = "\n".join(lab.output.lines)
    if _top(name, failed) is OnFailure.ROLLBACK:
        assert summary.status == "rolled-back", log
        assert state(lab) == start, log
    else:  # `abort` (the hurricane's preflight, quorum hand-over and last verify)
        assert summary.status == "failed", log
        assert "rolling back" not in log


class _FailingColdStart:
    """Site B's hypervisor, except that a cold start there fails (the disk does not open)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def cold_start(self, xml: str, elsewhere: object = ()) -> object:
        raise HypervisorError("injected: the domain's disk did not open at B")


def test_a_failed_cold_fallback_leaves_no_guest_running_nowhere(tmp_path: Path) -> None:
    """web's live migration does not converge (it dirties memory faster than the link),
    so `fallback: cold` shuts it down at A, demotes appdata there, and its cold start at B
    fails: the rollback must start web at A again on a primary appdata, alive."""
    shutil.copytree(REPO / "lab" / "xml", tmp_path / "xml")
    xml = tmp_path / "xml" / "web.xml"
    xml.write_text(xml.read_text().replace("dirty_rate_mibps='8'", "dirty_rate_mibps='100000'"))
    lab = SimLab(tmp_path)
    start = state(lab)
    lab.env.hypervisors["B"] = _FailingColdStart(lab.env.hypervisors["B"])  # type: ignore[assignment]
    summary = run(lab, *HURRICANE, Injector(0))
    log = "\n".join(lab.output.lines)
    assert summary.status == "rolled-back", log
    assert "did not converge" in log and "injected: the domain's disk did not open" in log
    assert "web ran nowhere: started again at A" in log
    assert state(lab) == start, log


def test_a_guest_that_crashes_after_the_live_move_back_is_started_at_the_source(
    tmp_path: Path,
) -> None:
    """The live drill's way back: web is live-migrated B -> A, and its kernel panics at A
    right after (the lab saw it once in about fourteen migrations). The failed step's undo
    finds web running nowhere and starts it at B on a primary appdata; the rest of the
    rollback then brings everything home to A, as it started."""
    lab = SimLab(tmp_path)
    start = state(lab)
    injector = Injector(
        0, "after", key="back/10-migrate-live-web",
        then=lambda: crash_vm(lab.cluster, lab.env, "web") and None,
    )  # fmt: skip
    summary = run(lab, *LIVE, injector)
    log = "\n".join(lab.output.lines)
    assert injector.failed == "back/10-migrate-live-web", log
    assert summary.status == "rolled-back", log
    assert "web ran nowhere: started again at B" in log
    assert state(lab) == start, log


def test_a_rollback_killed_after_undoing_the_failed_step_resumes_without_redoing_it(
    tmp_path: Path,
) -> None:
    """web has moved to B when its step fails; the runner dies right after the failed
    step's undo moved web back to A (its end never journaled). `resume` asks that undo's
    probe (web runs at A: in effect), does not move web again, and finishes the rollback."""
    lab = SimLab(tmp_path)
    start = state(lab)
    undo = "over/10-migrate-live-web~undo"
    injector = Injector(0, "after", key="over/10-migrate-live-web", kill_after=undo)
    with pytest.raises(Killed):
        run(lab, *LIVE, injector)
    assert injector.undone == [undo]
    (record,) = Journal(lab.env.state_dir).runs()
    again = Injector(0)
    summary = resume(lab, LIVE[0], record.run_id, again)
    log = "\n".join(lab.output.lines)
    assert summary.status == "rolled-back", log
    assert undo not in again.undone and again.ran == [], log  # nothing run twice
    assert state(lab) == start, log


COLD_MOVE = """\
name: cold-move-web
steps:
  - {id: move, action: vm.cold_failover, with: {target: web, site: B}, rollback: undo,
     on_failure: rollback}
  - id: boom
    action: check.monitors
    with: {site: A}
    on_failure: rollback
"""


@pytest.mark.parametrize("how", ["later-step-fails", "its-start-at-B-fails"])
def test_a_cold_failover_is_undone_by_moving_the_vm_back(tmp_path: Path, how: str) -> None:
    """vm.cold_failover changes where a VM runs and which copy is primary: its undo moves
    it back cold, also when it failed midway (shut down at A, appdata switched, its
    start at B failed)."""
    lab = SimLab(tmp_path)
    start = state(lab)
    if how == "its-start-at-B-fails":
        lab.env.hypervisors["B"] = _FailingColdStart(lab.env.hypervisors["B"])  # type: ignore[assignment]
        summary = lab.runbook(COLD_MOVE)
    else:  # web moved to B, then its monitors are checked at A and fail
        summary = lab.runbook(COLD_MOVE)
    log = "\n".join(lab.output.lines)
    assert summary.status == "rolled-back", log
    assert "move~undo" in log, log
    assert state(lab) == start, log


def test_the_undo_of_a_demotion_takes_a_fresh_grant_and_never_one_held_elsewhere(
    tmp_path: Path,
) -> None:
    """The simulated witness: A holds quorum at epoch 0 and dbdata was demoted there after
    B took epoch 1. The undo (promote with fresh_grant) makes A primary at epoch 2, A's
    new grant; with B holding quorum it refuses and leaves A secondary."""
    from drorch.runbook.steps import _witness
    from drorch.runbook.steps._where import sim_dir

    lab = SimLab(tmp_path)
    lab.run("vm.shutdown", target="db", site="A")
    lab.run("replication.demote", target="dbdata", site="A")
    lab.run("replication.promote", target="dbdata", site="B", epoch=1)
    lab.run("replication.demote", target="dbdata", site="B")
    d = sim_dir(lab.ctx())
    assert d is not None
    _witness.write_sim(d, "B", 1)
    with pytest.raises(StepFailed) as held:
        lab.run("replication.promote", target="dbdata", site="A", fresh_grant=True)
    assert held.value.code == "quorum-held-elsewhere"
    assert lab.roles()[("dbdata", "A")] == "secondary"
    _witness.write_sim(d, "A", 0)
    done = lab.run("replication.promote", target="dbdata", site="A", fresh_grant=True)
    assert done.data["epoch"] == 2, done.message
    assert "A's witness grant renewed for a fresh epoch 2" in done.message
    assert lab.world()["sim-witness.json"] == {"holder": "A", "epoch": 2}
