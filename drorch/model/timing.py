"""Timing invariants: the survivor may only take over after the lost site surely fenced.

    takeover_wait >= lease_timeout + switch_delay
    watchdog_timeout + margin <= lease_timeout

Unsafe combinations are errors. Write latency of sync replication over distance is a
warning: light in fibre covers about 195,000 km/s, so each synchronous write costs at
least `2 * distance_km / 195000` seconds of round trip.
"""

from __future__ import annotations

from drorch.model.fields import Context
from drorch.model.types import Cluster, FailoverMode, ReplicationMode, WatchdogKind

FIBRE_KM_PER_S = 195_000.0
MIN_HEARTBEATS_PER_LEASE = 3


def fibre_round_trip(distance_km: float) -> float:
    """Seconds for one round trip through fibre over `distance_km`."""
    return 2 * distance_km / FIBRE_KM_PER_S


def check_quorum(c: Cluster, ctx: Context) -> None:
    q, f = c.quorum, c.fencing
    if q.heartbeat >= q.lease_timeout:
        ctx.error(
            "heartbeat-too-slow",
            f"heartbeat {q.heartbeat:g}s must be shorter than lease_timeout"
            f" {q.lease_timeout:g}s, or every lease expires between renewals",
            ctx.where.at("quorum", "heartbeat"),
        )
    elif q.heartbeat * MIN_HEARTBEATS_PER_LEASE > q.lease_timeout:
        ctx.warn(
            "few-heartbeats-per-lease",
            f"heartbeat {q.heartbeat:g}s allows fewer than {MIN_HEARTBEATS_PER_LEASE}"
            f" renewals per lease_timeout {q.lease_timeout:g}s; one lost packet may cost"
            " the lease",
            ctx.where.at("quorum", "heartbeat"),
        )
    needed = q.lease_timeout + q.switch_delay
    if q.takeover_wait < needed:
        ctx.error(
            "takeover-wait-too-short",
            f"takeover_wait {q.takeover_wait:g}s is shorter than lease_timeout"
            f" {q.lease_timeout:g}s + switch_delay {q.switch_delay:g}s = {needed:g}s: the"
            " survivor could take over before the lost site has fenced itself"
            " (leave takeover_wait out to derive it)",
            ctx.where.at("quorum", "takeover_wait"),
        )
    if f.watchdog is WatchdogKind.NONE:
        ctx.warn(
            "no-watchdog",
            "fencing.watchdog is none: a hung node cannot fence itself, so automatic"
            " takeover is only safe if something else powers it off",
            ctx.where.at("fencing", "watchdog"),
        )
    elif f.watchdog_timeout + f.margin > q.lease_timeout:
        ctx.error(
            "watchdog-exceeds-lease",
            f"watchdog_timeout {f.watchdog_timeout:g}s + margin {f.margin:g}s ="
            f" {f.watchdog_timeout + f.margin:g}s exceeds lease_timeout"
            f" {q.lease_timeout:g}s: a node that lost its lease could still be running"
            " when the other site takes over",
            ctx.where.at("fencing", "watchdog_timeout"),
        )


def check_agent(c: Cluster, ctx: Context) -> None:
    a = c.agent
    if a.member_timeout < 2 * a.heartbeat:
        ctx.error(
            "member-timeout-too-short",
            f"agent.member_timeout {a.member_timeout:g}s is shorter than two agent heartbeats"
            f" ({2 * a.heartbeat:g}s): one lost heartbeat would declare a healthy site lost",
            ctx.where.at("agent", "member_timeout"),
        )
    w = c.fencing.watchdog_timeout
    if c.fencing.watchdog is not WatchdogKind.NONE and w <= a.heartbeat:
        ctx.error(
            "watchdog-below-agent-heartbeat",
            f"fencing.watchdog_timeout {w:g}s is not longer than agent.heartbeat"
            f" {a.heartbeat:g}s: the loop feeds once per heartbeat, plus its observation"
            " budget (half the smaller of the heartbeat and the slack past it), so the"
            " watchdog would fire on a healthy site",
            ctx.where.at("fencing", "watchdog_timeout"),
        )
    if a.failover is FailoverMode.AUTOMATIC and c.fencing.watchdog is WatchdogKind.NONE:
        ctx.error(
            "automatic-without-watchdog",
            "agent.failover is automatic but fencing.watchdog is none: nothing guarantees"
            " that a lost site stops writing before the other site takes over",
            ctx.where.at("agent", "failover"),
        )


def check_migration(c: Cluster, ctx: Context) -> None:
    m = c.migration
    if m.max_downtime > m.downtime_ceiling:
        ctx.error(
            "downtime-ceiling-below-start",
            f"migration.max_downtime {m.max_downtime:g}s is above downtime_ceiling"
            f" {m.downtime_ceiling:g}s; the ceiling caps how far max_downtime may be raised",
            ctx.where.at("migration", "downtime_ceiling"),
        )


def check_distance(c: Cluster, ctx: Context) -> None:
    if c.distance_km is None:
        return
    rtt = fibre_round_trip(c.distance_km)
    if rtt <= c.write_latency_budget:
        return
    for i, vol in enumerate(c.volumes):
        if vol.mode is ReplicationMode.SYNC:
            ctx.warn(
                "latency-budget",
                f"volume {vol.name} replicates synchronously over {c.distance_km:g} km: each"
                f" write waits at least {rtt * 1000:.3g} ms of fibre round trip, above the"
                f" write_latency_budget of {c.write_latency_budget * 1000:g} ms (sync is"
                " usually kept under ~50 km; consider mode: async)",
                ctx.where.at("volumes", i, "mode"),
            )


def check_all(c: Cluster, ctx: Context) -> None:
    check_quorum(c, ctx)
    check_agent(c, ctx)
    check_migration(c, ctx)
    check_distance(c, ctx)


def witness_timing_problems(c: Cluster, heartbeat_ms: int, lease_ms: int) -> list[str]:
    """What the witness's `welcome` says against the cluster file: the lease the witness
    grants must be the `lease_timeout` every safety rule here was derived from, and it
    must expect heartbeats as often as the sites send them. Any difference breaks the
    timing chain (a longer lease there lets a lost site keep quorum past takeover_wait)."""
    problems = []
    q = c.quorum
    if lease_ms != round(q.lease_timeout * 1000):
        problems.append(
            f"the witness grants {lease_ms} ms leases but quorum.lease_timeout is"
            f" {q.lease_timeout:g}s: set one to the other (takeover_wait, the watchdog and"
            " the fencing chain are derived from lease_timeout)"
        )
    if heartbeat_ms != round(q.heartbeat * 1000):
        problems.append(
            f"the witness expects a heartbeat every {heartbeat_ms} ms but quorum.heartbeat is"
            f" {q.heartbeat:g}s"
        )
    return problems
