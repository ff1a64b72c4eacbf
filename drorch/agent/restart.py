"""The agent's part in starting a cluster that runs nowhere (drorch.decide.start decides).

Each cycle it is given what the loop observed (quorum, the witness, the local replicas as
the rejoin pass saw them, what runs here) and keeps the one piece of state the decision
needs: since when the cluster has looked idle from here. When the decision says RUN it
starts the cluster-start runbook once, as a job; a failed run is not retried until the
cluster has changed (it ran somewhere, or stopped looking idle), as for takeovers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from drorch.agent.jobs import Job, JobState
from drorch.clock import Clock
from drorch.decide.agent import Takeover, TakeoverAction
from drorch.decide.rejoin import ReplicaView
from drorch.decide.start import StartView, decide_start, runs_nowhere
from drorch.model.types import Cluster

log = logging.getLogger("drorch.agent")

StartCluster = Callable[[str], Job]
"""Start the cluster-start runbook at this site (its `to` param); the running job."""


class ClusterStart:
    def __init__(
        self,
        cluster: Cluster,
        site: str,
        clock: Clock,
        start: StartCluster,
        busy: Callable[[], str | None] = lambda: None,
    ) -> None:
        """`busy`: the id of a drorch run that holds the cluster (its run lock), or None."""
        self.cluster, self.site, self.clock, self.start = cluster, site, clock, start
        self.busy = busy
        self.idle_since: float | None = None
        self.job: Job | None = None
        self.finished: JobState | None = None
        self.decision: Takeover | None = None

    def cycle(
        self,
        *,
        replicas: Sequence[ReplicaView],
        primary_here: Sequence[str],
        has_quorum: bool,
        peer_seen: bool,
        witness_reachable: bool,
        lease_holder: str | None,
        maintenance: bool,
        taking_over: bool,
    ) -> list[str]:
        """Decide, and start the runbook when the decision says so. What was started."""
        now = self.clock.monotonic()
        why = runs_nowhere(replicas, primary_here)
        job = self.job
        running = job is not None and job.state.running
        if why is None and not running:
            self.idle_since = None
            if job is not None:
                self.finished = job.state  # reported until the next run
            self.job = None  # the cluster runs (or changed): a new idle spell is judged afresh
        elif self.idle_since is None:
            self.idle_since = now
        failed = None if job is None or running or job.state.ok is not False else job.state.message
        view = StartView(
            site=self.site,
            now=now,
            preferred=self.site == self.cluster.primary_site,
            has_quorum=has_quorum,
            peer_seen=peer_seen,
            witness_reachable=witness_reachable,
            lease_holder=lease_holder,
            maintenance=maintenance,
            busy=self.busy() if why is not None else None,
            taking_over=taking_over,
            idle_since=None if why is None and not running else self.idle_since,
            idle_reason=why or "",
            start_running=running,
            start_failed=failed,
        )
        last = self.decision
        self.decision = decide_start(
            view, takeover_wait=self.cluster.quorum.takeover_wait, mode=self.cluster.agent.failover
        )
        if why is not None and (last is None or last.action is not self.decision.action):
            # each change while it runs nowhere, so a run that never starts says why
            log.info("cluster start: %s: %s", self.decision.action.value, self.decision.reason)
        if self.decision.action is not TakeoverAction.RUN or self.job is not None:
            return []
        log.warning("cluster start: %s", self.decision.reason)
        self.job = self.start(self.site)
        return [f"cluster-start runbook started: {self.decision.reason}"]

    def report(self) -> dict[str, object]:
        d = self.decision
        if d is None:
            return {}
        return {"action": d.action.value, "reason": d.reason, "wait_left": round(d.wait_left, 3)}
