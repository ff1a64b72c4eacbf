"""The monitors of the resources that run on this node, and their recovery.

Each monitor runs on its own `interval` (a light check often, a heavy one less often).
When a resource's monitor fails, `drorch.decide.recovery` decides (Pacemaker's
migration-threshold and failure-timeout): restart it in place up to `max_restarts`
times within `failure_window`, wait while a restart is within its budget, and on the
next failure escalate its group (the resource and everything it shares a dependency
with) to the escalation runbook, which moves it to the other site.

The watchdog gate (decide_feed) asks `ok`: every level-1 monitor of a local resource
passes, or its recovery is under way (a restart within budget, an escalation running
or done). Levels 2 and 3 drive recovery but never starve the watchdog: an answer that
is slow or wrong is no reason to power the site off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from drorch.agent.bounded import Bounded, Unobserved
from drorch.agent.jobs import Job
from drorch.clock import Clock
from drorch.decide.recovery import Recovery, RecoveryPolicy, decide_recovery
from drorch.monitor.base import CheckResult, CheckStatus, Monitor

log = logging.getLogger("drorch.agent")

# resource ("vm db"), time limit in seconds (its restart budget) -> what was done; raises
# on failure. It runs on its own thread: the agent loop never waits for it.
Restart = Callable[[str, float], str]
Escalate = Callable[[tuple[str, ...], str], Job]  # group, reason -> a started job


@dataclass
class Watched:
    """One monitor of one resource (`vm db`, `service proxy`)."""

    resource: str
    monitor: Monitor
    interval: float
    next_at: float = 0.0
    last: CheckResult | None = None


@dataclass
class _Resource:
    failures: list[float] = field(default_factory=list)
    restart_started: float | None = None
    restarts: int = 0
    restart_job: Job | None = None  # the restart in place, on its own thread
    restart_reported: bool = True
    escalation: Job | None = None  # its group's escalation (one per group)
    escalated_by: str = ""  # the member whose failure escalated the group
    state: str = "ok"


@dataclass(frozen=True)
class HealthView:
    ok: bool
    reason: str
    monitors: dict[str, dict[str, object]]


class LocalHealth:
    def __init__(
        self,
        watched: Sequence[Watched],
        *,
        clock: Clock,
        policy: RecoveryPolicy,
        groups: Callable[[str], tuple[str, ...]],
        restart: Restart,
        escalate: Escalate,
        start_job: Callable[[Job, str], object] = Job.start,
        bounded: Bounded | None = None,
        busy: Callable[[], str | None] = lambda: None,
    ) -> None:
        """`start_job(job, message)`: how a restart job runs; a thread by default (the
        loop keeps feeding the watchdog meanwhile), `Job.run_here` under a FakeClock.
        `bounded`: the loop's call budget; a check past it is `waiting` (unobserved)
        until the monitor's own timeout has passed, then failed. `busy()`: the id of the
        drorch run holding the cluster's run lock, or None; while a run holds it, the run
        owns the resources (it stops and starts guests on purpose, and verifies them), so
        a failing check starts no recovery and does not starve the watchdog."""
        self.busy = busy
        self.bounded = bounded or Bounded(None)
        self.watched = list(watched)
        self.start_job = start_job
        self.clock = clock
        self.policy = policy
        self.groups = groups
        self.restart = restart
        self.escalate = escalate
        self.resources: dict[str, _Resource] = {w.resource: _Resource() for w in self.watched}
        self.pending: list[tuple[str, Recovery, str]] = []
        self.escalations: list[tuple[tuple[str, ...], Job]] = []  # every one, in order
        self._was_local: frozenset[str] | None = None

    def budget(self, resource: str) -> float:
        """How long a restarted resource may keep failing before it counts again: two of
        its slowest monitor's intervals plus that monitor's timeout."""
        mine = [w for w in self.watched if w.resource == resource]
        return max((2 * w.interval + w.monitor.timeout for w in mine), default=60.0)

    def poll(self, local: frozenset[str]) -> HealthView:
        """Run the monitors that are due on resources that run here; decide recovery
        (carried out by `act`). Resources not here are not judged."""
        now = self.clock.monotonic()
        if self._was_local is not None:  # a resource that just came here starts afresh
            for w in self.watched:
                if w.resource in local and w.resource not in self._was_local:
                    w.monitor.rearm()
        self._was_local = local
        failing: dict[str, list[str]] = {}
        level1: dict[str, list[str]] = {}
        out: dict[str, dict[str, object]] = {}
        for w in self.watched:
            if w.resource not in local:
                out[w.monitor.name] = {"resource": w.resource, "state": "not here"}
                w.last, w.next_at = None, 0.0
                continue
            if now >= w.next_at or w.next_at == float("inf"):
                w.next_at = now + w.interval
                w.last = self._check(w)  # past the budget: asked again next cycle
            r = w.last
            assert r is not None
            out[w.monitor.name] = {
                "resource": w.resource,
                "level": w.monitor.level,
                "state": r.status.value,
                "reason": r.reason,
            }
            if r.status is CheckStatus.FAILED:
                failing.setdefault(w.resource, []).append(f"{w.monitor.name}: {r.reason}")
                if w.monitor.level == 1:
                    level1.setdefault(w.resource, []).append(f"{w.monitor.name}: {r.reason}")
        self.pending = []
        blocked: list[str] = []
        held = self.busy() if failing else None
        for name, res in self.resources.items():
            if name not in local:
                res.state, res.restart_started = "not here", None
                continue
            why = "; ".join(failing.get(name, []))
            if why and held is not None:
                res.state = f"held: drorch run {held or '?'} holds the cluster"
                continue
            res.state = self._decide(name, res, bool(why), why, now)
            if name in level1 and not self._under_way(res):
                blocked.append(f"{name}: {'; '.join(level1[name])} ({res.state})")
        for w in self.watched:
            out[w.monitor.name]["recovery"] = self.resources[w.resource].state
        if blocked:
            return HealthView(False, "; ".join(blocked), out)
        if failing:
            return HealthView(True, "failing monitors are being recovered", out)
        return HealthView(True, "all monitors of local resources pass", out)

    def _check(self, w: Watched) -> CheckResult:
        key = f"monitor {w.monitor.name}"
        try:
            return self.bounded.call(key, w.monitor.check)
        except Unobserved as exc:
            w.next_at = float("inf")  # asked again next cycle: its answer is pending
            hung = self.bounded.hung_for(key) or 0.0
            if hung > w.monitor.timeout + (self.bounded.budget or 0.0):
                return CheckResult(CheckStatus.FAILED, f"unobserved past its timeout: {exc}")
            return CheckResult(CheckStatus.WAITING, f"unobserved: {exc}")

    def _under_way(self, res: _Resource) -> bool:
        if res.escalation is not None:
            s = res.escalation.state
            return s.running or bool(s.ok)
        return res.state.startswith(("restart", "escalat"))

    def _decide(self, name: str, res: _Resource, failed: bool, why: str, now: float) -> str:
        if res.escalation is not None:
            s = res.escalation.state
            if not failed and not s.running:
                res.escalation, res.failures = None, []
                return "ok"
            by = "" if res.escalated_by in ("", name) else f" with its group ({res.escalated_by})"
            if s.running:
                return f"escalating{by}: runbook running"
            return f"escalated{by}: {s.message}"
        hung = self._restart_hung(name, res, now)
        if hung is not None and failed:
            self.pending.append((name, Recovery.ESCALATE, f"{hung} ({why})"))
            return f"{Recovery.ESCALATE.value}: {hung}"
        d = decide_recovery(
            name,
            failed_now=failed,
            failures=tuple(res.failures),
            restart_started=res.restart_started,
            now=now,
            policy=RecoveryPolicy(
                self.policy.max_restarts, self.policy.failure_window, self.budget(name)
            ),
        )
        if d.action is Recovery.NONE:
            res.restart_started = None
            return "ok"
        if d.action is Recovery.WAIT:
            return f"restarting: {d.reason}"
        self.pending.append((name, d.action, f"{d.reason} ({why})"))
        return f"{d.action.value}: {d.reason}"

    def _restart_hung(self, name: str, res: _Resource, now: float) -> str | None:
        """A restart still running after its budget: it counts as failed, and the next
        step is to move the group (a second restart cannot start beside it)."""
        job = res.restart_job
        if job is None or not job.state.running or res.restart_started is None:
            return None
        took = now - res.restart_started
        budget = self.budget(name)
        if took <= budget:
            return None
        return f"{name}: restart in place still running after {took:.1f}s (budget {budget:g}s)"

    def _restart_done(self, name: str, res: _Resource) -> str | None:
        """The line for a restart that finished since it was last reported."""
        job = res.restart_job
        if job is None or res.restart_reported or job.state.running:
            return None
        res.restart_reported = True
        s = job.state
        took = (s.ended_at or 0.0) - (s.started_at or 0.0)
        if s.ok:
            return f"{s.message} ({took:.1f}s)"
        log.error("restart of %s failed: %s", name, s.message)
        return f"restart of {name} FAILED: {s.message}"

    def _start_restart(self, name: str) -> Job:
        budget = self.budget(name)

        def work() -> tuple[bool, str]:
            return True, self.restart(name, budget)

        job = Job(f"restart {name}", work, self.clock)
        self.start_job(job, f"restarting {name} in place")
        return job

    def act(self) -> list[str]:
        """Carry out what `poll` decided: restarts in place (each on its own thread, so
        the loop keeps its cadence), escalations. One line each."""
        done: list[str] = []
        now = self.clock.monotonic()
        for name, res in self.resources.items():
            line = self._restart_done(name, res)
            if line is not None:
                done.append(line)
        for name, action, reason in self.pending:
            res = self.resources[name]
            res.failures = [t for t in res.failures if now - t <= self.policy.failure_window]
            res.failures.append(now)
            if action is Recovery.RESTART:
                if res.restart_job is not None and res.restart_job.state.running:
                    done.append(f"{reason}: the last restart of {name} is still running")
                    continue
                res.restart_started = now
                res.restarts += 1
                res.restart_job, res.restart_reported = self._start_restart(name), False
                finished = self._restart_done(name, res)  # at once when run in place
                if finished is None:
                    budget = self.budget(name)
                    finished = f"restarting on its own thread (budget {budget:g}s)"
                done.append(f"{reason}: {finished}")
                continue
            group = self.groups(name)
            job = self._group_escalation(group)
            if job is not None:  # a member's failure already moves the group: not twice
                done.append(f"{reason}: its group is already escalated ({job.state.message})")
            else:
                job = self.escalate(group, reason)
                self.escalations.append((group, job))
                done.append(f"{reason}: escalated group {', '.join(group)}")
            for member in group:  # the whole group is under way: no member restarts alone
                r = self.resources.get(member)
                if r is not None and r.escalation is not job:
                    r.escalation, r.escalated_by, r.restart_started = job, name, None
        self.pending = []
        return done

    def _group_escalation(self, group: tuple[str, ...]) -> Job | None:
        """The escalation under way (running, or done and not yet cleared) for any
        member of `group`, if there is one."""
        for member in group:
            r = self.resources.get(member)
            if r is not None and r.escalation is not None:
                st = r.escalation.state
                if st.running or st.ok:
                    return r.escalation
        return None

    def close(self) -> None:
        for w in self.watched:
            w.monitor.close()
