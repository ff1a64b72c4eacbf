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

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from drorch.clock import Clock
from drorch.decide.agent import (
    AgentView,
    Feed,
    SelfFenceDecision,
    Takeover,
    TakeoverAction,
    decide_feed,
    decide_self_fence,
    decide_takeover,
)
from drorch.decide.quorum import QuorumBasis, QuorumDecision, WitnessView, decide_quorum
from drorch.fencing.feeding import FeedLog
from drorch.fencing.watchdog import WatchdogDevice, WatchdogError
from drorch.model.types import Cluster
from drorch.monitor.base import CheckStatus, Monitor

log = logging.getLogger("drorch.agent")


@dataclass(frozen=True)
class LeaseState:
    """The witness as this site sees it. `renewed_at`: monotonic time of the last granted
    renewal; `gained_at`: when this site gained the lease it holds now."""

    reachable: bool
    held: bool
    epoch: int = 0
    holder: str | None = None
    lease_left: float = 0.0
    renewed_at: float | None = None
    gained_at: float | None = None
    outdated_here: tuple[str, ...] = ()  # volumes the witness records outdated at this site


class LeaseSource(Protocol):
    def lease(self) -> LeaseState: ...


class LocalResources(Protocol):
    def primary_here(self) -> tuple[str, ...]:
        """Names of the volumes that are primary and guests/services running here."""
        ...

    def self_fence(self, decision: SelfFenceDecision) -> list[str]:
        """Stop writing (see decide_self_fence); returns what was done, one line each."""
        ...


@dataclass
class CycleReport:
    at: float
    members: tuple[str, ...]
    quorum: QuorumDecision
    feed: Feed
    self_fence: SelfFenceDecision
    takeover: Takeover
    primary_here: tuple[str, ...]
    monitors: dict[str, str]
    watchdog: dict[str, object]
    maintenance: bool
    acted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "at": self.at,
            "members": list(self.members),
            "quorum": {"held": self.quorum.has_quorum, "reason": self.quorum.reason},
            "watchdog": {**self.watchdog, "fed": self.feed.feed, "reason": self.feed.reason},
            "self_fence": {"fence": self.self_fence.fence, "reason": self.self_fence.reason},
            "takeover": {
                "action": self.takeover.action.value,
                "reason": self.takeover.reason,
                "wait_left": round(self.takeover.wait_left, 3),
            },
            "primary_here": list(self.primary_here),
            "monitors": self.monitors,
            "maintenance": self.maintenance,
            "acted": self.acted,
        }


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
    ) -> None:
        self.cluster, self.node = cluster, node
        site, _ = cluster.node(node)
        self.site = site.name
        self.peer = cluster.other_site(self.site).name
        self.peer_nodes = {n.name for n in cluster.other_site(self.site).nodes}
        self.total_nodes = sum(len(s.nodes) for s in cluster.sites)
        self.clock = clock
        self.watchdog = watchdog
        self.members = members
        self.lease_source = lease
        self.resources = resources
        self.monitors = list(monitors)
        self.run_failover = run_failover
        self.maintenance = maintenance
        self.role_log = role_log
        self.feeds = FeedLog(timeout=cluster.fencing.watchdog_timeout)
        self.armed = False
        self.peer_lost_since: float | None = None
        self.took_over_epoch: int | None = None
        self.last: CycleReport | None = None
        self._last_primary: tuple[str, ...] | None = None
        self._last_renewal: float | None = None
        self._started: float | None = None

    # -- observe ------------------------------------------------------------------------
    def _witness(self) -> tuple[WitnessView | None, LeaseState | None]:
        if self.lease_source is None:
            return None, None
        s = self.lease_source.lease()
        view = WitnessView(s.reachable, s.held, s.holder, s.epoch, s.lease_left)
        return view, s

    def _monitors(self) -> tuple[bool, str, dict[str, str]]:
        results = {}
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

    def _audit(
        self, primary: tuple[str, ...], quorum: QuorumDecision, lease: LeaseState | None
    ) -> tuple[str, ...]:
        problems = []
        if (
            primary
            and lease is not None
            and lease.holder not in (None, self.site)
            and lease.reachable
        ):
            problems.append(
                f"{', '.join(primary)} run here at {self.site} but the witness says site"
                f" {lease.holder} holds quorum"
            )
        return tuple(problems)

    # -- one cycle ----------------------------------------------------------------------
    def cycle(self) -> CycleReport:
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
        elif self.peer_lost_since is None:
            self.peer_lost_since = now
        primary = self.resources.primary_here()
        ok, why, results = self._monitors()
        expired_for = None
        if lease is not None and lease.held and lease.gained_at is not None:
            # the witness grants a new holder only after the last lease expired at least
            # switch_delay ago: holding a grant gained since proves that much
            expired_for = self.cluster.quorum.switch_delay + (now - lease.gained_at)
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
            audit_problems=self._audit(primary, quorum, lease),
            maintenance=maintenance,
            peer_lost_since=self.peer_lost_since,
            peer_lease_expired_for=expired_for,
            outdated_here=lease.outdated_here if lease is not None else (),
            active_here=self.took_over_epoch is not None,
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
        self._act(report, quorum)
        self._log_roles(report)
        report.watchdog = {
            "armed": self.armed,
            "device": self.watchdog.name,
            "pid": getattr(self.watchdog, "pid", None),
            **self.feeds.as_dict(),
        }
        self.last = report
        return report

    # -- act ----------------------------------------------------------------------------
    def _act(self, r: CycleReport, quorum: QuorumDecision) -> None:
        if r.feed.disarm:
            if self.armed:
                self.watchdog.disarm()
                self.armed = False
                r.acted.append("watchdog disarmed (maintenance)")
            return
        if r.self_fence.fence:
            r.acted += self.resources.self_fence(r.self_fence)
        if r.takeover.action is TakeoverAction.RUN and self.run_failover is not None:
            epoch = quorum.epoch
            r.acted.append(f"site-failover runbook started at epoch {epoch}")
            if self.run_failover(r.takeover, epoch):
                self.took_over_epoch = epoch
                r.acted.append("site-failover runbook finished")
            else:
                r.acted.append("site-failover runbook failed")
        if not self.armed:
            if not r.feed.feed:
                return  # never arm a watchdog we could not feed
            self.watchdog.arm(self.cluster.fencing.watchdog_timeout)
            self.armed = True
            r.acted.append("watchdog armed")
        if r.feed.feed:
            try:
                slack = self.watchdog.keepalive()
            except WatchdogError as e:
                r.acted.append(f"watchdog feed failed: {e}")
                return
            warning = self.feeds.record(slack, self.clock.now())
            if warning:
                log.warning("%s", warning)

    def _log_roles(self, r: CycleReport) -> None:
        if r.primary_here == self._last_primary:
            return
        self._last_primary = r.primary_here
        if self.role_log is None:
            return
        line = {
            "at": self.clock.now(),
            "node": self.node,
            "site": self.site,
            "primary": list(r.primary_here),
            "quorum": r.quorum.has_quorum,
        }
        with open(self.role_log, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def stop(self, *, clean: bool) -> None:
        """A clean stop disarms the watchdog (magic close); otherwise it is left to fire."""
        if self.armed and clean:
            self.watchdog.disarm()
        else:
            self.watchdog.close()
        self.armed = False
