"""The site agent: once per loop, observe → decide (drorch.decide.agent) → act.

What it observes comes through small seams (`LeaseSource`, `LocalResources`, the
membership table, the monitors), so the same loop runs against the real witness,
pyrepl/DRBD and libvirt, and against fakes under a `FakeClock`.

Order inside a cycle follows Patroni: renew quorum first, then decide, then feed the
watchdog only if the decision says healthy. Acting on a takeover hands the work to the
runbook engine (`run_failover`), exactly once per takeover; its result is recorded.
Every role change is appended to the role log with a wall-clock timestamp, so that tests
and the lab can prove that no two sites were ever primary at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from drorch.agent.bounded import Bounded, unobserved_health
from drorch.agent.gate import WatchdogGate
from drorch.agent.health import LocalHealth
from drorch.agent.jobs import Job
from drorch.agent.lease_audit import covered_by_hand_over, lease_audit
from drorch.agent.rejoin import Rejoin
from drorch.agent.restart import ClusterStart
from drorch.agent.roles import RoleLog
from drorch.agent.view import (
    CycleReport,
    LeaseSource,
    LeaseState,
    LocalResources,
    StartFence,
    StartTakeover,
)
from drorch.clock import Clock
from drorch.decide.agent import (
    AgentView,
    SelfFenceDecision,
    Takeover,
    TakeoverAction,
    decide_feed,
    decide_self_fence,
    decide_takeover,
)
from drorch.decide.quorum import QuorumBasis, QuorumDecision, WitnessView, decide_quorum
from drorch.decide.rejoin import LeaseView
from drorch.fencing.feeding import FeedLog
from drorch.fencing.watchdog import WatchdogDevice
from drorch.model.types import Cluster
from drorch.monitor.base import CheckStatus, Monitor

log = logging.getLogger("drorch.agent")


class Agent:
    def __init__(
        self,
        cluster: Cluster,
        node: str,
        *,
        clock: Clock,
        watchdog: WatchdogDevice,
        members: Callable[[], tuple[str, ...]],
        lease: LeaseSource | None,
        resources: LocalResources,
        monitors: Sequence[Monitor] = (),
        run_failover: Callable[[Takeover, int], bool] | None = None,
        maintenance: Callable[[], bool] = lambda: False,
        role_log: Path | None = None,
        health: LocalHealth | None = None,
        local: Callable[[], frozenset[str]] | None = None,
        start_takeover: StartTakeover | None = None,
        start_fence: StartFence | None = None,
        rejoin: Rejoin | None = None,
        bounded: Bounded | None = None,
        start: ClusterStart | None = None,
    ) -> None:
        """`bounded`: the budget of every call a cycle makes to observe (shared with
        `resources`, `health` and `rejoin`; drorch.agent.bounded); None: unbounded.
        `start`: starts a cluster that runs nowhere (judging `rejoin`'s replica views)."""
        self.cluster, self.node = cluster, node
        site, _ = cluster.node(node)
        self.site = site.name
        self.peer = cluster.other_site(self.site).name
        self.peer_nodes = {n.name for n in cluster.other_site(self.site).nodes}
        self.total_nodes = sum(len(s.nodes) for s in cluster.sites)
        self.clock = clock
        self.watchdog = watchdog
        self.gate = WatchdogGate(watchdog, cluster.fencing.watchdog_timeout, clock)
        self.bounded = bounded
        self.members = members
        self.lease_source = lease
        self.resources = resources
        self.monitors = list(monitors)
        self.run_failover = run_failover
        self.maintenance = maintenance
        self.health = health
        self.local = local
        self.start_takeover = start_takeover
        self.start_fence = start_fence
        self.rejoin = rejoin
        self.start = start
        self.takeover_job: Job | None = None
        self.fence_job: Job | None = None
        self._takeover_done: Job | None = None  # the takeover run whose success was counted
        self.takeover_epoch = 0
        self.peer_lost_since: float | None = None
        self.took_over_epoch: int | None = None
        self.last: CycleReport | None = None
        self.roles = RoleLog(role_log, clock, node, self.site)
        self._last_renewal: float | None = None
        self._started: float | None = None

    @property
    def armed(self) -> bool:
        return self.gate.armed

    @property
    def feeds(self) -> FeedLog:
        return self.gate.feeds

    # -- observe ------------------------------------------------------------------------
    def _witness(self) -> tuple[WitnessView | None, LeaseState | None]:
        if self.lease_source is None:
            return None, None
        s = self.lease_source.lease()
        view = WitnessView(s.reachable, s.held, s.holder, s.epoch, s.lease_left)
        return view, s

    def _monitors(self) -> tuple[bool, str, dict[str, object]]:
        if self.health is not None:
            local = self.local() if self.local is not None else frozenset()
            h = self.health.poll(local)
            return h.ok, h.reason, dict(h.monitors)
        results: dict[str, object] = {}
        failing = []
        for m in self.monitors:
            if m.level != 1:
                continue
            r = m.check()
            results[m.name] = f"{r.status.value}: {r.reason}"
            if r.status is CheckStatus.FAILED:
                failing.append(f"{m.name}: {r.reason}")
        if failing:
            return False, "; ".join(failing), results
        return True, "all level-1 monitors pass", results

    # -- one cycle ----------------------------------------------------------------------
    def cycle(self) -> CycleReport:
        if self.bounded is not None:
            self.bounded.begin()
        now = self.clock.monotonic()
        maintenance = self.maintenance()
        members = self.members()
        witness, lease = self._witness()
        quorum = decide_quorum(self.total_nodes, members, self.site, witness)
        renewed = (
            lease is not None
            and lease.renewed_at is not None
            and lease.renewed_at != self._last_renewal
        )
        if lease is not None:
            self._last_renewal = lease.renewed_at
        if quorum.basis is QuorumBasis.MAJORITY:
            renewed = True  # a majority's heartbeats within member_timeout are the renewal
        peer_seen = any(n in self.peer_nodes for n in members)
        if peer_seen:
            self.peer_lost_since = None
            if self.fence_job is not None and not self.fence_job.state.running:
                self.fence_job = None  # the next loss is fenced afresh
            job = self.takeover_job
            if job is not None and (job.state.ok is False or job is self._takeover_done):
                # a failed run is not retried, and a finished one is not run again while
                # the peer is lost; but once the peer is seen, its next loss is new
                self.takeover_job = None
        elif self.peer_lost_since is None:
            self.peer_lost_since = now
        primary = self.resources.primary_here()
        self._want_lease(primary, peer_seen, now)
        ok, why, results = self._monitors()
        hung: dict[str, float] = getattr(self.resources, "unobserved", {})
        ok, why = unobserved_health(ok, why, hung, self.cluster.agent.member_timeout)
        expired_for = None
        if lease is not None and lease.held and lease.gained_at is not None:
            # the witness grants a new holder only after the last lease expired at least
            # switch_delay ago: holding a grant gained since proves that much
            expired_for = self.cluster.quorum.switch_delay + (now - lease.gained_at)
        running = self._takeover_running()  # first: a finished run makes this site active
        if self.took_over_epoch is not None and not primary and running is None:
            # it took over once, but runs nothing now (it fenced itself, or a person or a
            # rollback stopped it): not the active site any more, or it would refuse
            # every later takeover and cluster start as "already runs the cluster"
            log.info("took over at epoch %s, but runs nothing now", self.took_over_epoch)
            self.took_over_epoch = None
        covered = covered_by_hand_over(
            primary, peer_seen, lease, self.peer, getattr(self.resources, "handover", {})
        )
        view = AgentView(
            site=self.site,
            peer=self.peer,
            now=now,
            quorum=quorum,
            loop_progressed=True,
            runs_primary=bool(primary),
            lease_renewed=renewed,
            monitors_ok=ok,
            monitors_reason=why,
            # the peer holding the lease IS the hand-over's state: not an audit problem
            audit_problems=() if covered else lease_audit(primary, lease, self.site),
            maintenance=maintenance,
            peer_lost_since=self.peer_lost_since,
            peer_lease_expired_for=expired_for,
            outdated_here=lease.outdated_here if lease is not None else (),
            # this site runs the cluster: it took over, or runs primary resources (it is
            # the active site, or an operator ran `drorch failover` here)
            active_here=self.took_over_epoch is not None or bool(primary),
            peer_fence_confirmed=self._fence_confirmed(),
            takeover_running=running,
            takeover_failed=self._takeover_failed(),
            covered=covered,
        )
        feed = decide_feed(view)
        fence = decide_self_fence(view, self.cluster.fencing.self_fence)
        if self._started is None:
            self._started = now
        grace = self.cluster.agent.member_timeout - (now - self._started)
        if fence.fence and grace > 0:
            # Just started: the peers' heartbeats may not have arrived yet. Nothing can
            # take over before takeover_wait anyway, and the watchdog is not armed.
            fence = SelfFenceDecision(
                False, None, f"starting: {grace:.1f}s more for membership to form"
            )
        takeover = decide_takeover(
            view,
            takeover_wait=self.cluster.quorum.takeover_wait,
            switch_delay=self.cluster.quorum.switch_delay,
            mode=self.cluster.agent.failover,
        )
        report = CycleReport(
            now, members, quorum, feed, fence, takeover, primary, results, {}, maintenance
        )
        report.health = why
        self._act(report, quorum)
        self._fence_peer(report, view)
        if self.rejoin is not None:
            held = None if lease is None else LeaseView(lease.reachable, lease.holder, lease.epoch)
            report.acted += self.rejoin.cycle(
                lease=held,
                peer_seen=peer_seen,
                maintenance=maintenance,
                takeover_running=running is not None,
                act=not fence.fence,  # a self-fence stops writing first; rejoin comes after
            )
            report.replicas = self.rejoin.rows
            if self.start is not None:
                report.acted += self.start.cycle(
                    replicas=self.rejoin.views,
                    primary_here=primary,
                    has_quorum=quorum.has_quorum and not fence.fence,
                    peer_seen=peer_seen,
                    witness_reachable=lease is not None and lease.reachable,
                    lease_holder=None if lease is None else lease.holder,
                    maintenance=maintenance,
                    taking_over=running is not None or view.active_here,
                )
        report.jobs = {
            k: j.state.as_dict()
            for k, j in (
                ("takeover", self.takeover_job),
                ("fence", self.fence_job),
                ("rejoin", self.rejoin.job if self.rejoin is not None else None),
            )
            if j is not None
        }
        if self.start is not None:
            report.start = self.start.report()
            last = self.start.job.state if self.start.job is not None else self.start.finished
            if last is not None:
                report.jobs["cluster-start"] = last.as_dict()
        if self.rejoin is not None and self.rejoin.done:
            report.jobs["rejoined"] = self.rejoin.done[-5:]
        if self.health is not None:
            report.jobs["escalations"] = [
                {"group": list(g), **job.state.as_dict()} for g, job in self.health.escalations
            ]
        self._log_roles(report)
        report.watchdog = self.gate.report()
        if self.bounded is not None:
            report.unobserved = dict(self.bounded.unobserved)
        self.last = report
        return report

    def _want_lease(self, primary: tuple[str, ...], peer_seen: bool, now: float) -> None:
        """Compete for the witness's lease only when running the resources or when the
        peer is lost (after the start-up grace: its heartbeats may not have arrived yet).
        A healthy idle site that grabbed the lease would make the active site's
        self-audit fence it."""
        want = getattr(self.lease_source, "want", None)
        if want is None:
            return
        starting = self._started is None or now - self._started < self.cluster.agent.member_timeout
        job = self.start.job if self.start is not None else None
        restarting = job is not None and job.state.running  # its runbook took the lease
        # a takeover under way keeps the lease it took even if the peer is seen again
        taking_over = self.takeover_job is not None and self.takeover_job.state.running
        want(bool(primary) or restarting or taking_over or (not peer_seen and not starting))

    def _fence_confirmed(self) -> bool:
        return self.fence_job is not None and self.fence_job.state.ok is True

    def _takeover_running(self) -> str | None:
        job = self.takeover_job
        if job is None:
            return None
        s = job.state
        if s.running:
            return f"site-failover runbook running at epoch {self.takeover_epoch}"
        if s.ok and self.took_over_epoch is None and job is not self._takeover_done:
            self._takeover_done = job  # counted once: a site that later runs nothing is not
            self.took_over_epoch = self.takeover_epoch  # made active again each cycle
            log.info("site-failover runbook finished: %s", s.message)
        return None

    def _takeover_failed(self) -> str | None:
        job = self.takeover_job
        if job is None or job.state.ok is not False:
            return None
        return job.state.message

    def _fence_peer(self, r: CycleReport, v: AgentView) -> None:
        """Positive fencing: with quorum, once per loss of the peer, ask its fence agent
        to power it off. Only a confirmed OFF shortens takeover_wait (decide_takeover)."""
        if (
            self.start_fence is None
            or self.fence_job is not None
            or v.maintenance
            or v.active_here
            or v.peer_lost_since is None
            or not v.quorum.has_quorum
        ):
            return
        self.fence_job = self.start_fence()
        r.acted.append(f"fencing site {self.peer} through its fence agent")

    # -- act ----------------------------------------------------------------------------
    def _act(self, r: CycleReport, quorum: QuorumDecision) -> None:
        if r.feed.disarm:
            self.gate.disarm(r)
            return
        if r.self_fence.fence:
            r.acted.append(f"self-fence: {r.self_fence.reason}")  # the log says why
            r.acted += self._cancel_runs(f"site {self.site} fenced itself: {r.self_fence.reason}")
            r.acted += self.resources.self_fence(r.self_fence)
        elif not quorum.has_quorum:  # its watchdog fenced it already, or it runs nothing
            r.acted += self._cancel_runs(f"site {self.site} lost quorum: {quorum.reason}")
        if self.health is not None and not r.self_fence.fence:
            r.acted += self.health.act()
        start = self.start_takeover
        if r.takeover.action is TakeoverAction.RUN and start and self.takeover_job is None:
            self.takeover_epoch = quorum.epoch
            self.takeover_job = start(r.takeover, quorum.epoch)
            r.acted.append(f"site-failover runbook started at epoch {quorum.epoch}")
        elif r.takeover.action is TakeoverAction.RUN and self.run_failover is not None:
            epoch = quorum.epoch
            r.acted.append(f"site-failover runbook started at epoch {epoch}")
            if self.run_failover(r.takeover, epoch):
                self.took_over_epoch = epoch
                r.acted.append("site-failover runbook finished")
            else:
                r.acted.append("site-failover runbook failed")
        self.gate.feed(r)

    def _cancel_runs(self, reason: str) -> list[str]:
        """The runbook runs this agent started stop before their next step or retry, when
        the site fences itself or has no quorum (its lease ran out: what the run does
        next is no longer this site's to do). A run left going would retry steps against
        the guests the fence stops, holding the run lock that every later start and
        takeover waits for (a cluster-start run once retried a heartbeat check on a guest
        the soft watchdog had killed for minutes after the heal)."""
        jobs = [self.takeover_job, self.start.job if self.start is not None else None]
        if self.health is not None:
            jobs += [job for _group, job in self.health.escalations]
        done = []
        for job in jobs:
            if job is not None and job.cancel(reason):
                log.warning("cancelled %s: %s", job.state.name, reason)
                done.append(f"cancelled {job.state.name}")
        return done

    def _log_roles(self, r: CycleReport) -> None:
        # after acting, what runs now (a self-fence is logged when it is done, not a
        # cycle later)
        primary = self.resources.primary_here() if r.acted else r.primary_here
        self.roles.record(primary, r.quorum.has_quorum)

    def stop(self, *, clean: bool) -> None:
        """A clean stop disarms the watchdog (magic close); otherwise it is left to fire."""
        self.gate.stop(clean=clean)
