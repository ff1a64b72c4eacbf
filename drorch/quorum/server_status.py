"""What `QuorumServer.status()` and SIGUSR1 report: per cluster the live holder, epoch,
lease left, outdate records and each site's sessions."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drorch.quorum.server import QuorumServer

log = logging.getLogger("drorch.quorumd")


def status_rows(server: QuorumServer) -> list[dict[str, object]]:
    """Per cluster: holder with a live lease, epoch, seconds left, and the sessions
    of each site with the partition size (`nodes`) each node last reported."""
    now = server.clock.monotonic()
    by_cluster: dict[str, dict[str, list[str]]] = {}
    for session in server.sessions.values():
        if session.authenticated:
            nodes = f"{session.node}({session.nodes} nodes)"
            by_cluster.setdefault(session.cluster, {}).setdefault(session.site, []).append(nodes)
    rows: list[dict[str, object]] = []
    for name in sorted(server.config.clusters):
        lease = server.grants.clusters.get(name)
        holder = server.grants.live_holder(name, now)
        left = None
        if lease is not None and lease.lease_until is not None and holder is not None:
            left = round(max(0.0, lease.lease_until - now), 3)
        rows.append(
            {
                "cluster": name,
                "holder": holder,
                "epoch": lease.epoch if lease else 0,
                "lease_left_s": left,
                "current_only": {
                    v: f"{r.site} since epoch {r.epoch}"
                    for v, r in sorted(server.outdates.records.get(name, {}).items())
                },
                "sessions": {
                    site: sorted(v) for site, v in sorted(by_cluster.get(name, {}).items())
                },
            }
        )
    return rows


def log_status(server: QuorumServer) -> None:
    """SIGUSR1: one log line per cluster, plus the connection counters."""
    grace = " (restart grace)" if server.grants.in_grace(server.clock.monotonic()) else ""
    log.info(
        "status%s: %d session(s), %d without hello, %d refused, %d evicted",
        grace,
        sum(1 for s in server.sessions.values() if s.authenticated),
        len(server.unauthenticated),
        server.refused,
        server.evicted,
    )
    for row in status_rows(server):
        by_site = row["sessions"]
        assert isinstance(by_site, dict)
        sessions = "; ".join(f"{site}: {', '.join(v)}" for site, v in by_site.items())
        log.info(
            "status %s: holder %s, epoch %s, lease left %s s, sessions %s",
            row["cluster"],
            row["holder"] or "-",
            row["epoch"],
            row["lease_left_s"] if row["lease_left_s"] is not None else "-",
            sessions or "-",
        )
