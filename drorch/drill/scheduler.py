"""The drill scheduler: one loop that serves the drills of many clusters.

Each tick, on the injected clock:

1. Drills that ended free their sites.
2. Each drill's latest due occurrence (cron time + its jitter, drorch.drill.schedule)
   that the scheduler has not dealt with yet is queued. Occurrences it slept through
   (it was down) collapse into that one: they are recorded once as `missed`, and only
   the latest may still run, and only until its `starting_deadline`.
3. Queued drills start in order of their start time when none of their sites is busy
   with another drill (a site named the same in two configs is the same site). One
   that cannot start before its deadline is recorded as `missed` with the reason.
4. The loop sleeps until the next start time (or `poll_interval` while a drill runs
   or waits), at most `max_sleep`.

A drill is "dealt with" (history's `scheduler` table) when it starts or is missed, so
a restarted scheduler neither repeats a drill nor forgets one. The first time the
scheduler sees a drill it runs nothing from the past: only a drill it has seen can be
missed.

Drills left `running` in the history: at its first tick the scheduler asks the probe
(drorch.drill.liveness) about each. One whose process is gone (killed, crashed, its
host restarted) is marked `interrupted` with the reason and is not running any more;
one still running (started by an earlier scheduler, whose child outlived it) keeps its
sites busy until it ends. A drill this scheduler started that exits without recording
a result is marked `interrupted` when it is reaped. An interrupted drill's runbook run
that changed nothing is abandoned, so the next drill's guards do not wait for it
(drorch.drill.interrupted).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from drorch.clock import Clock
from drorch.drill.history import DrillRow, History, Reason
from drorch.drill.interrupted import settler, sweep
from drorch.drill.launch import Adopted, Launched, Launcher
from drorch.drill.liveness import DrillProbe, ProcessProbe
from drorch.drill.schedule import DrillRef, Occurrence, count_between, latest_due, next_occurrences

Key = tuple[str, str]


@dataclass(frozen=True)
class SchedulerEvent:
    at: float
    kind: str  # started finished waiting missed seen interrupted adopted
    cluster: str
    drill: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind} {self.cluster}/{self.drill}: {self.message}"


@dataclass
class _Waiting:
    occ: Occurrence
    slept_through: int  # earlier occurrences missed while the scheduler was down
    told: str = ""  # the last "waiting for" message logged (log each reason once)


@dataclass
class _Running:
    occ: Occurrence
    handle: Launched
    started: float


class Scheduler:
    def __init__(
        self, refs: Iterable[DrillRef], clock: Clock, launcher: Launcher, history: History,
        *, poll_interval: float = 5.0, max_sleep: float = 300.0,
        log: Callable[[SchedulerEvent], None] = lambda e: None,
        probe: DrillProbe | None = None,
    ) -> None:  # fmt: skip
        self.refs = {r.key: r for r in refs}
        self.clock = clock
        self.launcher = launcher
        self.history = history
        self.poll_interval = poll_interval
        self.max_sleep = max_sleep
        self.log = log
        self.running: dict[Key, _Running] = {}
        self.waiting: dict[Key, _Waiting] = {}
        self.events: list[SchedulerEvent] = []
        self.probe = probe or ProcessProbe(history.path.parent)
        # an interrupted drill's runbook run that changed nothing is abandoned
        self.settle = settler(history.path.parent, clock.now)
        self._recovered = False

    # ---- the loop ---------------------------------------------------------------------

    def run(self, stop: Callable[[], bool] = lambda: False, max_ticks: int | None = None) -> None:
        """Tick until `stop()` (checked before each sleep) or `max_ticks` ticks."""
        ticks = 0
        while not stop() and (max_ticks is None or ticks < max_ticks):
            pause = self.tick()
            ticks += 1
            if stop() or (max_ticks is not None and ticks >= max_ticks):
                break
            self.clock.sleep(pause)

    def tick(self) -> float:
        """One pass; returns how long to sleep before the next."""
        now = self.clock.now()
        if not self._recovered:
            self._recover(now)
        self._reap(now)
        for key, ref in self.refs.items():
            if key not in self.waiting:
                self._discover(ref, now)
        self._start_waiting(now)
        return self._pause(now)

    def busy_sites(self) -> dict[str, Key]:
        return {site: key for key, r in self.running.items() for site in r.occ.ref.sites}

    # ---- steps of a tick ------------------------------------------------------------

    def _recover(self, now: float) -> None:
        """Drills a previous scheduler (or an operator) left `running`."""
        self._recovered = True
        found = sweep(self.history, self.probe, now, by="the scheduler at its start",
                      settle=self.settle)  # fmt: skip
        for row, reason in found.interrupted:
            self._event(now, "interrupted", (row.cluster, row.drill),
                        f"history row {row.id}: {reason.message}")  # fmt: skip
        for row in found.live:
            self._adopt(now, row)

    def _adopt(self, now: float, row: DrillRow) -> None:
        key = (row.cluster, row.drill)
        ref = self.refs.get(key)
        if ref is None or key in self.running:
            return  # not ours to schedule: its own scheduler watches it
        occ = Occurrence(ref, row.scheduled_for or row.started_at, row.started_at,
                         row.started_at)  # fmt: skip
        handle = Adopted(row, self.probe)
        self.running[key] = _Running(occ, handle, row.started_at)
        self._event(now, "adopted", key, f"still running ({handle.describe()}); its sites "
                    f"stay busy until it ends")  # fmt: skip

    def _reap(self, now: float) -> None:
        for key, r in list(self.running.items()):
            rc = r.handle.poll()
            if rc is None:
                continue
            del self.running[key]
            took = now - r.started
            self._event(
                now, "finished", key, f"exit {rc} after {took:.0f}s ({r.handle.describe()})"
            )
            gone = sweep(self.history, self.probe, now, keys={key},
                         exit_status=None if rc == -1 else rc,
                         by="the scheduler when the drill's process ended",
                         settle=self.settle)  # fmt: skip
            for row, reason in gone.interrupted:
                self._event(now, "interrupted", key, f"history row {row.id}: {reason.message}")

    def _discover(self, ref: DrillRef, now: float) -> None:
        key = ref.key
        last = self.history.last_nominal(*key)
        latest = latest_due(ref, now)
        if last is None:
            # first sight: nothing from before this scheduler existed is "missed"
            self.history.set_last_nominal(*key, latest.nominal if latest else now)
            self._event(now, "seen", key, "first seen; runs from the next due time on")
            return
        if latest is None or latest.nominal <= last:
            return
        slept = count_between(ref, last, latest.nominal) - 1
        if key in self.running:
            self._miss(now, latest, slept, Reason(
                "still-running", "the previous run of this drill is still running"))  # fmt: skip
            return
        self.waiting[key] = _Waiting(latest, max(slept, 0))

    def _start_waiting(self, now: float) -> None:
        for key, w in sorted(self.waiting.items(), key=lambda kv: (kv[1].occ.start_at, kv[0])):
            busy = self.busy_sites()
            holders = sorted({f"{s} ({'/'.join(busy[s])})" for s in w.occ.ref.sites if s in busy})
            if now > w.occ.deadline:
                del self.waiting[key]
                late = now - w.occ.start_at
                why = (
                    f"site {', '.join(holders)} still busy" if holders
                    else "the scheduler was not running"
                )  # fmt: skip
                self._miss(now, w.occ, w.slept_through, Reason(
                    "starting-deadline-passed",
                    f"{why} {late:.0f}s after its start time; starting_deadline is "
                    f"{w.occ.ref.drill.starting_deadline:.0f}s"))  # fmt: skip
                continue
            if holders:
                told = f"waiting: site {', '.join(holders)} busy"
                if told != w.told:
                    w.told = told
                    self._event(now, "waiting", key, told)
                continue
            self._launch(now, key, w)

    def _launch(self, now: float, key: Key, w: _Waiting) -> None:
        del self.waiting[key]
        self.history.set_last_nominal(*key, w.occ.nominal)
        if w.slept_through:
            self._record_missed(now, w.occ, w.slept_through)
        try:
            handle = self.launcher.start(w.occ)
        except OSError as exc:
            self._miss(now, w.occ, 0, Reason("launch-failed", f"could not start: {exc}"))
            return
        self.running[key] = _Running(w.occ, handle, now)
        late = now - w.occ.start_at
        d = w.occ.ref.drill
        when = f", {late:.0f}s late" if late >= 1 else ""
        self._event(now, "started", key, f"{d.kind.value} drill to {d.target}{when} "
                    f"({handle.describe()})")  # fmt: skip

    def _pause(self, now: float) -> float:
        wake = now + self.max_sleep
        if self.running or self.waiting:
            wake = min(wake, now + self.poll_interval)
        for key, ref in self.refs.items():
            if key in self.waiting:
                continue
            for occ in next_occurrences(ref, now - ref.offset - 1):
                if occ.start_at > now:
                    wake = min(wake, occ.start_at)
                    break
        return max(wake - now, 0.001)

    # ---- records -------------------------------------------------------------------

    def _miss(self, now: float, occ: Occurrence, slept: int, reason: Reason) -> None:
        self.history.set_last_nominal(*occ.ref.key, occ.nominal)
        if slept:
            self._record_missed(now, occ, slept)
        d = occ.ref.drill
        self.history.skip(occ.ref.cluster.name, d.name, d.kind.value, d.target, now, "missed",
                          [reason], scheduled_for=occ.nominal)  # fmt: skip
        self._event(now, "missed", occ.ref.key, f"{reason.code}: {reason.message}")

    def _record_missed(self, now: float, occ: Occurrence, slept: int) -> None:
        d = occ.ref.drill
        reason = Reason("scheduler-down", f"{slept} earlier run(s) fell while the scheduler "
                        "was down; they run once, as this latest one, not each")  # fmt: skip
        self.history.skip(occ.ref.cluster.name, d.name, d.kind.value, d.target, now, "missed",
                          [reason], scheduled_for=None)  # fmt: skip
        self._event(now, "missed", occ.ref.key, reason.message)

    def _event(self, now: float, kind: str, key: Key, message: str) -> None:
        ev = SchedulerEvent(now, kind, key[0], key[1], message)
        self.events.append(ev)
        self.log(ev)
