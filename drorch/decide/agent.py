"""The site agent's three decisions per cycle, PURE: feed the watchdog? self-fence? take
over the lost site?

Feeding follows sbd's inquisitor and Patroni's order: the watchdog is fed only while
everything that makes this node safe to keep running holds — the loop made progress,
a node running primary resources holds quorum (fed only after a successful renewal),
its level-1 monitors pass or their recovery is within budget, and the agent's self-audit
finds nothing wrong. A node that cannot say all of that lets the watchdog fence it.

Taking over: the survivor may act only once the lost site has surely fenced itself —
`takeover_wait` after it was lost, with its lease expired at the witness for at least
`switch_delay` — or at once after a positive fence confirmed it off. Never on an
unconfirmed fence before the wait. Failback is never automatic: a site that returns
rejoins as secondary, and nothing here moves resources back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from drorch.decide.quorum import QuorumDecision
from drorch.model.types import FailoverMode, SelfFence

__all__ = ["FailoverMode"]


@dataclass(frozen=True)
class AgentView:
    """What one agent observed in one cycle. Times are monotonic seconds."""

    site: str
    peer: str
    now: float
    quorum: QuorumDecision
    loop_progressed: bool = True
    runs_primary: bool = False  # primary volumes or running guests/services on this node
    lease_renewed: bool = False  # the witness renewed (or the majority held) this cycle
    monitors_ok: bool = True
    monitors_reason: str = "all level-1 monitors pass"
    audit_problems: tuple[str, ...] = ()
    maintenance: bool = False
    peer_lost_since: float | None = None  # when the peer stopped heartbeating
    peer_lease_expired_for: float | None = None  # at the witness; None = still held/unknown
    peer_fence_confirmed: bool = False  # a fence agent confirmed the peer off
    outdated_here: tuple[str, ...] = ()  # volumes the witness marks outdated at this site
    active_here: bool = False  # this site already runs the cluster (took over before)
    takeover_running: str | None = None  # the site-failover run under way, if any
    takeover_failed: str | None = None  # why the last site-failover run failed, if it did
    # why this site's primary resources may run without its own lease this cycle: the
    # peer holds it (or nobody does), the peer's agent is seen, and the replication link
    # says only one copy takes writes (a planned hand-over). None: quorum alone decides.
    covered: str | None = None


@dataclass(frozen=True)
class Feed:
    feed: bool
    reason: str
    disarm: bool = False


def decide_feed(v: AgentView) -> Feed:
    if v.maintenance:
        return Feed(False, "maintenance mode: the agent acts on nothing; watchdog disarmed", True)
    if not v.loop_progressed:
        return Feed(False, "the agent loop made no progress this cycle")
    handover = v.runs_primary and not v.quorum.has_quorum and v.covered is not None
    if v.runs_primary and not v.quorum.has_quorum and not handover:
        return Feed(False, f"runs primary resources without quorum: {v.quorum.reason}")
    if v.runs_primary and not v.lease_renewed and not handover:
        return Feed(False, "runs primary resources and quorum was not renewed this cycle")
    if not v.monitors_ok:
        return Feed(False, f"monitors: {v.monitors_reason}")
    if v.audit_problems:
        return Feed(False, "self-audit: " + "; ".join(v.audit_problems))
    what = "primary with quorum" if v.runs_primary else "no primary resources here"
    if handover:
        what = f"primary under {v.peer}'s lease during a hand-over ({v.covered})"
    return Feed(True, f"healthy: {what}, {v.monitors_reason}")


@dataclass(frozen=True)
class SelfFenceDecision:
    fence: bool
    mode: SelfFence | None
    reason: str


def decide_self_fence(v: AgentView, mode: SelfFence) -> SelfFenceDecision:
    if v.maintenance:
        return SelfFenceDecision(False, None, "maintenance mode: no self-fence")
    if not v.runs_primary:
        return SelfFenceDecision(False, None, "nothing to fence: no primary resources here")
    if v.quorum.has_quorum:
        return SelfFenceDecision(False, None, f"quorum held: {v.quorum.reason}")
    if v.covered is not None:
        return SelfFenceDecision(
            False, None, f"hand-over: {v.peer} is connected and cannot write ({v.covered})"
        )
    how = (
        "stop writing at once (freeze/demote the volumes, destroy the guests)"
        if mode is SelfFence.SUICIDE
        else "stop the resources gracefully within watchdog_timeout"
    )
    return SelfFenceDecision(True, mode, f"lost quorum ({v.quorum.reason}): {how}")


class TakeoverAction(StrEnum):
    NONE = "none"
    WAIT = "wait"
    READY = "ready"  # manual mode: waiting for `drorch failover`
    RUN = "run"  # automatic: run runbooks/site-failover.yaml now
    RUNNING = "running"  # the site-failover runbook is running
    REFUSED = "refused"


@dataclass(frozen=True)
class Takeover:
    action: TakeoverAction
    reason: str
    wait_left: float = 0.0


def decide_takeover(
    v: AgentView, *, takeover_wait: float, switch_delay: float, mode: FailoverMode
) -> Takeover:
    if v.maintenance:
        return Takeover(TakeoverAction.NONE, "maintenance mode: no takeover")
    if v.active_here:
        return Takeover(TakeoverAction.NONE, f"site {v.site} already runs the cluster")
    if v.takeover_running is not None:
        return Takeover(TakeoverAction.RUNNING, f"taking over: {v.takeover_running}")
    if v.takeover_failed is not None:
        return Takeover(
            TakeoverAction.REFUSED,
            f"the site-failover runbook failed ({v.takeover_failed}); the agent does not"
            " retry it on its own: an operator resumes it or runs `drorch failover`",
        )
    if v.peer_lost_since is None:
        return Takeover(TakeoverAction.NONE, f"site {v.peer} is a member: nothing to take over")
    lost_for = v.now - v.peer_lost_since
    if not v.quorum.has_quorum:
        return Takeover(
            TakeoverAction.NONE,
            f"site {v.peer} lost {lost_for:.1f}s ago, but site {v.site} has no quorum:"
            f" {v.quorum.reason}",
        )
    if v.outdated_here:
        return Takeover(
            TakeoverAction.REFUSED,
            f"the witness marks {', '.join(sorted(v.outdated_here))} at {v.site} outdated:"
            f" promoting would lose writes {v.peer} made alone (needs an operator's"
            " --force --accept-data-loss)",
        )
    if v.peer_fence_confirmed:
        why = f"site {v.peer} was confirmed off by its fence agent"
    else:
        expired = v.peer_lease_expired_for
        if expired is None or expired < switch_delay:
            held = (
                "its lease is still held at the witness"
                if expired is None
                else f"its lease expired only {expired:.1f}s ago (switch_delay {switch_delay:g}s)"
            )
            return Takeover(
                TakeoverAction.WAIT,
                f"site {v.peer} lost {lost_for:.1f}s ago; {held}",
                max(takeover_wait - lost_for, switch_delay - (expired or 0.0)),
            )
        if lost_for < takeover_wait:
            left = takeover_wait - lost_for
            return Takeover(
                TakeoverAction.WAIT,
                f"site {v.peer} lost {lost_for:.1f}s ago; waiting {left:.1f}s more of"
                f" takeover_wait {takeover_wait:g}s for it to have fenced itself",
                left,
            )
        why = (
            f"site {v.peer} lost {lost_for:.1f}s ago (takeover_wait {takeover_wait:g}s) and"
            f" its lease expired at the witness {expired:.1f}s ago: it has fenced itself"
        )
    if mode is FailoverMode.MANUAL:
        return Takeover(
            TakeoverAction.READY,
            f"ready to take over, because {why}; run `drorch failover --to {v.site}`",
        )
    return Takeover(TakeoverAction.RUN, f"taking over automatically, because {why}")
