"""Drills left `running` in the history by a process that died: the scheduler marks
them `interrupted` (with the reason) when it (re)starts or reaps them, never counts
them as running, keeps the sites of one that still runs busy until it ends, and
`drorch drill history` / `drorch drill status` show them. On a FakeClock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from drorch.cli.main import cli
from drorch.drill.history import History
from drorch.drill.interrupted import changed_nothing
from drorch.drill.launch import Launched
from drorch.drill.liveness import ProcessProbe, own_process
from drorch.drill.preflight import preflight
from drorch.drill.runner import run_drill
from drorch.drill.schedule import DrillRef, Occurrence, refs_of
from drorch.drill.scheduler import Scheduler
from drorch.runbook.gates import YesConfirmer
from drorch.runbook.journal import Event, Journal
from drorch.runbook.lock import RunLock
from drorch.runbook.setup import RecordingOutput, RunOptions
from drorch.testing.clock import FakeClock
from drorch.testing.drill_launcher import FakeLauncher, FakeProbe, FakeRun
from tests.drill.conftest import make_refs, ts
from tests.drill.simlab import REPO, SimLab

SUN = ts(2026, 11, 29, 3)  # a Sunday, 03:00 UTC
WEEKLY = "  - {name: weekly, kind: live, schedule: '0 3 * * sun', target: %s}\n"


def begin(history: History, cluster: str, at: float, run_id: str = "", pid: int = 4242,
          kind: str = "live", host: str = "drhost") -> int:  # fmt: skip
    """A row as `drorch drill run` leaves it when it is killed -9 midway."""
    row = history.begin(cluster, "weekly", kind, "B", at, data={
        "process": {"pid": pid, "start_ticks": 123, "host": host}})  # fmt: skip
    if run_id:
        history.set_run_id(row, run_id)
    return row


def make(
    refs: list[DrillRef], clock: FakeClock, state: Path, probe: FakeProbe
) -> tuple[Scheduler, FakeLauncher, History]:
    history = History(state)
    launcher = FakeLauncher(clock, default=600.0)
    return Scheduler(refs, clock, launcher, history, probe=probe), launcher, history


def test_a_dead_running_row_is_marked_interrupted_at_start_and_blocks_nothing(
    tmp_path: Path,
) -> None:
    refs = make_refs("shop", drills=WEEKLY % "B")
    clock = FakeClock(start=SUN - 7 * 86400 - 60)
    first, _, history = make(refs, clock, tmp_path, FakeProbe())
    first.tick()  # seen; the scheduler then starts last week's drill, which is killed -9
    dead = begin(history, "shop", SUN - 7 * 86400, run_id="20261122T030000Z-dead")
    clock.advance(7 * 86400)  # the host restarts a week later, one minute before 03:00
    probe = FakeProbe()
    sched, launcher, history = make(refs, clock, tmp_path, probe)
    sched.run(max_ticks=5)
    row = history.get(str(dead))
    assert row is not None and row.result == "interrupted"
    assert row.ended_at == SUN - 60  # when the scheduler found it, on its clock
    (reason,) = row.reasons
    assert reason.code == "interrupted"
    assert reason.message == (
        "its process (pid 4242 on drhost) ended without recording a result: killed, crashed "
        "or its host restarted; found by the scheduler at its start. Its runbook run "
        "20261122T030000Z-dead is left as it was: `drorch runbook resume "
        "20261122T030000Z-dead` finishes it, `drorch runbook abandon 20261122T030000Z-dead` "
        "gives it up"
    )
    assert probe.asked == [dead]
    (ev,) = [e for e in sched.events if e.kind == "interrupted"]
    assert (ev.cluster, ev.drill, ev.at) == ("shop", "weekly", SUN - 60)
    # not counted as running: this week's drill starts on time
    assert [r.started for r in launcher.started] == [SUN]
    assert history.rows(results=("running",)) == []


def test_a_row_whose_drill_still_runs_keeps_its_sites_busy_until_it_ends(
    tmp_path: Path,
) -> None:
    # shop's weekly drill (started by the previous scheduler) outlives it; depot shares
    # the DR site "dr" and is due now: it must wait for shop's drill to end
    refs = [*make_refs("shop", ("hq1", "dr"), WEEKLY % "dr"),
            *make_refs("depot", ("hq2", "dr"), WEEKLY % "dr")]  # fmt: skip
    clock = FakeClock(start=SUN - 60)
    first, _, history = make(refs, clock, tmp_path, FakeProbe())
    first.tick()
    clock.advance(60)
    history.set_last_nominal("shop", "weekly", SUN)  # the previous scheduler started it
    running = begin(history, "shop", SUN, run_id="20261129T030000Z-live")
    probe = FakeProbe(live={running})
    sched, launcher, history = make(refs, clock, tmp_path, probe)
    sched.run(max_ticks=3)
    assert launcher.started == []
    assert set(sched.running) == {("shop", "weekly")}
    adopted = [e for e in sched.events if e.kind == "adopted"]
    assert [e.cluster for e in adopted] == ["shop"]
    assert "history row 1, pid 4242, started before this scheduler" in adopted[0].message
    assert [e.cluster for e in sched.events if e.kind == "waiting"] == ["depot"]
    probe.live.clear()  # shop's drill process dies without recording a result
    ended_at = clock.now()
    sched.run(max_ticks=2)
    row = history.get(str(running))
    assert row is not None and row.result == "interrupted"
    assert "found by the scheduler when the drill's process ended" in row.reasons[0].message
    assert [(r.occ.ref.cluster.name, r.started) for r in launcher.started] == [
        ("depot", ended_at)]  # fmt: skip


class _RowLauncher(FakeLauncher):
    """Like `drorch drill run`: each drill begins its history row; `killed` ones exit
    with status -9 and never finish it."""

    def __init__(self, clock: FakeClock, history: History, killed: set[str]) -> None:
        super().__init__(clock, default=300.0)
        self.history = history
        self.killed = killed

    def start(self, occ: Occurrence) -> Launched:
        run = super().start(occ)
        assert isinstance(run, FakeRun)
        self.history.begin(occ.ref.cluster.name, occ.ref.drill.name, "live", "B",
                           self.clock.now(), occ.nominal)  # fmt: skip
        if occ.ref.cluster.name in self.killed:
            run.status = -9
        return run


def test_a_drill_killed_under_the_scheduler_is_marked_when_it_is_reaped(
    tmp_path: Path,
) -> None:
    refs = make_refs("shop", drills=WEEKLY % "B")
    clock = FakeClock(start=SUN - 60)
    history = History(tmp_path)
    launcher = _RowLauncher(clock, history, killed={"shop"})
    sched = Scheduler(refs, clock, launcher, history, probe=FakeProbe())
    sched.run(max_ticks=200, stop=lambda: clock.now() > SUN + 900)
    (row,) = history.rows()
    assert row.result == "interrupted" and row.ended_at == SUN + 300
    assert row.reasons[0].message == (
        "its process ended (exit status -9) without recording a result: killed, crashed or "
        "its host restarted; found by the scheduler when the drill's process ended; it had "
        "not started its runbook"
    )
    assert [e.kind for e in sched.events] == ["seen", "started", "finished", "interrupted"]


def test_process_probe_tells_a_dead_or_reused_pid_from_a_running_drill(tmp_path: Path) -> None:
    history = History(tmp_path)
    me = own_process()
    alive = history.begin("shop", "weekly", "live", "B", 1.0, data={"process": me})
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    gone = history.begin("shop", "weekly", "live", "B", 2.0, data={
        "process": {**me, "pid": child.pid}})  # fmt: skip
    reused = history.begin("shop", "weekly", "live", "B", 3.0, data={
        "process": {**me, "start_ticks": int(str(me["start_ticks"])) + 1}})  # fmt: skip
    old = history.begin("shop", "weekly", "live", "B", 4.0)  # from before rows named a pid
    elsewhere = history.begin("shop", "weekly", "live", "B", 5.0, data={
        "process": {**me, "host": "another-host"}})  # fmt: skip
    locked = history.begin("shop", "weekly", "live", "B", 6.0)
    history.set_run_id(locked, "20261129T030000Z-lock")
    lock = RunLock(tmp_path, "shop")
    lock.acquire("20261129T030000Z-lock")
    try:
        probe = ProcessProbe(tmp_path)
        live = {r.id for r in history.rows() if probe.is_live(r)}
    finally:
        lock.release()
    assert live == {alive, elsewhere, locked}
    assert {gone, reused, old}.isdisjoint(live)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DRORCH_STATE_DIR", str(tmp_path))
    return tmp_path


def test_history_and_status_show_interrupted_drills(state: Path) -> None:
    from drorch.runbook.journal import Journal, RunRecord

    history = History(state)
    recorded = begin(history, "shop", SUN - 86400, run_id="20261128T030000Z-kill",
                     kind="test-recovery")  # fmt: skip
    from drorch.drill.interrupted import interrupted_reason

    row = history.get(str(recorded))
    assert row is not None
    history.interrupt(recorded, SUN, interrupted_reason(row, "the scheduler at its start"))
    # dead (no such pid on this host), not yet recorded by a scheduler
    unrecorded = begin(history, "shop", SUN, pid=2**22 + 7, host=socket.gethostname())
    done = history.begin("shop", "weekly", "live", "B", SUN + 60)
    history.finish(done, SUN + 120, "succeeded", run_id="20261129T030100Z-done")
    history.close()
    j = Journal(state)
    j.create_run(RunRecord("20261128T030000Z-kill", "shop", "drill-test-recovery", "f",
                           "", "", {}, False, "t", "h", 1, SUN - 86400, None, "running",
                           ""))  # fmt: skip
    j.close()
    shown = CliRunner().invoke(cli, ["drill", "history", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    rows = {r["id"]: r for r in json.loads(shown.output)}
    assert [rows[i]["result"] for i in (recorded, unrecorded, done)] == [
        "interrupted", "interrupted", "succeeded"]  # fmt: skip
    assert (
        "`drorch drill cleanup 20261128T030000Z-kill` removes its test copies"
        in (rows[recorded]["reasons"][0]["message"])
    )
    assert "found by `drorch drill history`" in rows[unrecorded]["reasons"][0]["message"]
    status = CliRunner().invoke(cli, ["drill", "status", "--format", "json"])
    assert status.exit_code == 0, status.output
    waiting = json.loads(status.output)
    # both wait for an operator: one's runbook run is still `running` in the journal, the
    # other's process is gone and no scheduler has recorded it yet; the finished one is not shown
    assert [(w["id"], w["result"]) for w in waiting] == [
        (recorded, "interrupted"), (unrecorded, "interrupted")]  # fmt: skip


def _event(step: str, kind: str, action: str = "vm.start", changed: bool = False) -> Event:
    return Event(0, "r", 0.0, step, kind, "main", action, 1, "ok", changed, "", {}, "")


@pytest.mark.parametrize(("events", "untouched", "where"), [
    ([], True, "it had not begun a step"),
    ([_event("a", "start", "check.sites_reachable"),
      _event("a", "end", "check.sites_reachable"),
      _event("hold", "start", "wait")], True, "it stopped in hold"),
    ([_event("over", "start", "plan.execute"),
      _event("over/01-stop", "start", "service.stop"),
      _event("over/01-stop", "end", "service.stop", changed=True)],
     False, "over/01-stop changed the cluster"),
    ([_event("copy", "start", "recovery.prepare")], False,
     "copy (recovery.prepare) was under way"),
    ([_event("in-sync", "start", "check.replication_in_sync"),
      _event("in-sync", "end", "check.replication_in_sync")], True, "it stopped in in-sync"),
])  # fmt: skip
def test_what_counts_as_having_changed_nothing(
    events: list[Event], untouched: bool, where: str
) -> None:
    assert changed_nothing(events) == (untouched, where)


def _held(tmp: Path, after: str) -> Path:
    text = (REPO / "runbooks" / "drills" / "live.yaml").read_text()
    anchor = {"in-sync": "  - id: over\n", "over": "  - id: quorum-over\n"}[after]
    held = text.replace(anchor, "  - {id: hold, action: wait, with: {seconds: 120}}\n" + anchor)
    assert held != text
    folder = tmp / f"held-{after}"
    folder.mkdir()
    (folder / "live.yaml").write_text(held)
    return folder


def _kill_at_hold(lab: SimLab, tmp: Path, after: str) -> str:
    log = tmp / f"drill-{after}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "drorch", "drill", "run", "weekly-live", "-c",
             str(lab.config), "--yes", "--runbooks", str(_held(tmp, after))],
            env={**os.environ, "DRORCH_STATE_DIR": str(lab.state)}, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        for _ in range(600):  # bounded: 60 s
            assert proc.poll() is None, log.read_text()
            if (lab.state / "runbooks.sqlite").exists():
                j = Journal(lab.state)
                try:
                    runs = j.runs()
                    if runs and any(e.step == "hold" and e.kind == "start"
                                    for e in j.events(runs[0].run_id)):  # fmt: skip
                        return runs[0].run_id
                finally:
                    j.close()
            time.sleep(0.1)
        raise AssertionError(f"never reached the hold: {log.read_text()}")
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimLab:
    monkeypatch.setenv("DRORCH_STATE_DIR", str(tmp_path / "state"))
    return SimLab(tmp_path)


def test_a_drill_killed_before_it_changed_anything_does_not_hold_back_the_next(
    sim: SimLab, tmp_path: Path
) -> None:
    run_id = _kill_at_hold(sim, tmp_path, "in-sync")
    assert [r.code for r in preflight(sim.cluster, sim.env())] == ["run-interrupted"]
    history = History(sim.state)
    sched = Scheduler(refs_of(sim.config, sim.cluster), sim.clock, FakeLauncher(sim.clock),
                      history, probe=ProcessProbe(sim.state))  # fmt: skip
    sched.tick()
    (row,) = history.rows()
    assert (row.result, row.run_id) == ("interrupted", run_id)
    assert row.reasons[0].message.endswith(
        f"found by the scheduler at its start. Its runbook run {run_id} had changed nothing "
        "(it stopped in hold): it is abandoned, so it does not hold back the next drill"
    )
    j = Journal(sim.state)
    record = j.run(run_id)
    j.close()
    assert record is not None and record.status == "abandoned"
    assert preflight(sim.cluster, sim.env()) == []
    opts = RunOptions(confirmer=YesConfirmer("t"), output=RecordingOutput(), user="t")
    assert run_drill(sim.cluster, sim.drill("live"), sim.env(), opts).result == "succeeded"


def test_a_drill_killed_after_it_moved_the_cluster_waits_for_an_operator(
    sim: SimLab, tmp_path: Path
) -> None:
    run_id = _kill_at_hold(sim, tmp_path, "over")  # everything runs at B now
    history = History(sim.state)
    sched = Scheduler(refs_of(sim.config, sim.cluster), sim.clock, FakeLauncher(sim.clock),
                      history, probe=ProcessProbe(sim.state))  # fmt: skip
    sched.tick()
    (row,) = history.rows()
    assert row.result == "interrupted"
    assert f"`drorch runbook resume {run_id}` finishes it" in row.reasons[0].message
    j = Journal(sim.state)
    record = j.run(run_id)
    j.close()
    assert record is not None and record.status == "running"  # left for the operator
    codes = {r.code for r in preflight(sim.cluster, sim.env())}
    assert {"run-interrupted", "not-at-primary-site"} <= codes
