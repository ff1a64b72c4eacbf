"""The scheduler loop on a FakeClock: due drills start, missed runs run once within the
starting deadline, jitter staggers clusters, and no two drills share a site at once."""

from __future__ import annotations

from pathlib import Path

from drorch.drill.history import History
from drorch.drill.schedule import DrillRef
from drorch.drill.scheduler import Scheduler
from drorch.testing.clock import FakeClock
from drorch.testing.drill_launcher import FakeLauncher
from tests.drill.conftest import make_refs, ts

WEEKLY = "  - {name: weekly, kind: live, schedule: '0 3 * * sun', target: B%s}\n"
SUN = ts(2026, 11, 29, 3)  # a Sunday, 03:00 UTC


def scheduler(
    refs: list[DrillRef], clock: FakeClock, state: Path, launcher: FakeLauncher | None = None
) -> tuple[Scheduler, FakeLauncher, History]:
    launcher = launcher or FakeLauncher(clock)
    history = History(state)
    return Scheduler(refs, clock, launcher, history, poll_interval=5.0), launcher, history


def test_a_due_drill_starts_at_its_time_and_only_once(tmp_path: Path) -> None:
    clock = FakeClock(start=SUN - 3600)
    sched, launcher, _ = scheduler(make_refs("shop"), clock, tmp_path)
    sched.run(max_ticks=50)
    assert [r.started for r in launcher.started] == [SUN]
    assert clock.now() < SUN + 7 * 86400  # bounded: 50 ticks did not run away
    # it slept to the start (no busy-waiting): few ticks before the start
    assert sum(1 for s in clock.sleeps if s < 5.0) <= 2


def test_missed_runs_run_once_at_the_next_start_within_the_deadline(tmp_path: Path) -> None:
    refs = make_refs("shop", drills=WEEKLY % ", starting_deadline: 2h")
    clock = FakeClock(start=SUN - 3 * 7 * 86400 - 60)  # three weeks earlier
    first, launcher, _ = scheduler(refs, clock, tmp_path)
    first.tick()  # the scheduler sees the drill, then goes down for three weeks
    assert launcher.started == []
    clock.advance(3 * 7 * 86400 + 3660)  # back up at 04:00: one hour after this week's
    again, launcher2, history2 = scheduler(refs, clock, tmp_path)
    again.run(max_ticks=3)
    assert [(r.occ.nominal, r.started) for r in launcher2.started] == [(SUN, SUN + 3600)]
    missed = history2.rows(results=("missed",))
    assert [r.reasons[0].code for r in missed] == ["scheduler-down"]
    assert "3 earlier run(s)" in missed[0].reasons[0].message  # -3w, -2w, -1w


def test_a_missed_run_past_its_deadline_is_recorded_not_run(tmp_path: Path) -> None:
    refs = make_refs("shop", drills=WEEKLY % ", starting_deadline: 30m")
    clock = FakeClock(start=SUN - 60)
    first, _, _ = scheduler(refs, clock, tmp_path)
    first.tick()
    clock.advance(3600 + 60)  # back at 04:00, 30 minutes too late
    again, launcher, history = scheduler(refs, clock, tmp_path)
    again.run(max_ticks=2)
    assert launcher.started == []
    (row,) = history.rows()
    assert row.result == "missed" and row.scheduled_for == SUN
    assert row.reasons[0].code == "starting-deadline-passed"
    assert "the scheduler was not running 3600s after its start time" in row.reasons[0].message


def test_jitter_staggers_clusters_inside_the_window(tmp_path: Path) -> None:
    refs = [
        ref for i in range(20)
        for ref in make_refs(f"c{i}", (f"A{i}", f"B{i}"), WEEKLY.replace("B%s", f"B{i}%s")
                             % ", window: 30m")
    ]  # fmt: skip
    clock = FakeClock(start=SUN - 60)
    sched, launcher, _ = scheduler(refs, clock, tmp_path, None)
    launcher.default = 60.0
    sched.run(max_ticks=200)
    starts = sorted(r.started for r in launcher.started)
    assert len(starts) == 20
    assert all(SUN <= s < SUN + 1800 for s in starts)
    assert len(set(starts)) >= 18  # not a herd on one second
    assert {r.started - r.occ.nominal for r in launcher.started} == {
        r.occ.ref.offset for r in launcher.started
    }


def test_no_two_drills_share_a_site_at_once(tmp_path: Path) -> None:
    # three clusters whose DR site is the same data centre "dr"; one on its own sites
    def on_dr(name: str, hq: str, deadline: str) -> list[DrillRef]:
        return make_refs(name, (hq, "dr"), WEEKLY.replace("B%s", "dr%s") % deadline)

    refs = [
        *on_dr("red", "hq1", ", starting_deadline: 3h"),
        *on_dr("blue", "hq2", ", starting_deadline: 3h"),
        *on_dr("green", "hq3", ", starting_deadline: 15m"),
        *make_refs("solo", ("x", "y"), WEEKLY.replace("B%s", "y%s") % ""),
    ]
    clock = FakeClock(start=SUN - 60)
    launcher = FakeLauncher(clock, default=1200.0)  # each drill takes 20 minutes
    sched, _, history = scheduler(refs, clock, tmp_path, launcher)
    sched.run(max_ticks=500)
    runs = {r.occ.ref.cluster.name: r for r in launcher.started}
    assert sorted(runs) == ["blue", "red", "solo"]  # green gave up at its 15m deadline
    assert runs["solo"].started == SUN  # its sites were free
    shared = sorted((runs[c] for c in ("red", "blue")), key=lambda r: r.started)
    assert shared[0].started == SUN and shared[1].started >= shared[0].ended
    assert shared[1].started - shared[0].ended <= 5.0  # the poll interval
    (missed,) = history.rows(results=("missed",))
    assert missed.cluster == "green" and missed.reasons[0].code == "starting-deadline-passed"
    assert "site dr (" in missed.reasons[0].message and "still busy" in missed.reasons[0].message
    waits = [e for e in sched.events if e.kind == "waiting"]
    second = shared[1].occ.ref.cluster.name
    assert {e.cluster for e in waits} == {second, "green"}  # each said once why it waits
    assert len(waits) == 2


def test_a_drill_still_running_at_its_next_time_is_not_started_twice(tmp_path: Path) -> None:
    refs = make_refs(
        "shop", drills="  - {name: often, kind: live, schedule: '*/10 * * * *', target: B}\n"
    )
    clock = FakeClock(start=SUN - 1)
    launcher = FakeLauncher(clock, default=25 * 60.0)
    sched, _, history = scheduler(refs, clock, tmp_path, launcher)
    sched.run(max_ticks=400, stop=lambda: clock.now() > SUN + 3600)
    starts = [r.started - SUN for r in launcher.started]
    # runs 00:00-00:25, then 00:30 (00:10 and 00:20 missed: still running), and so on
    assert starts == [0, 1800, 3600][: len(starts)] and len(starts) >= 2
    codes = {r.reasons[0].code for r in history.rows(results=("missed",))}
    assert codes == {"still-running"}
