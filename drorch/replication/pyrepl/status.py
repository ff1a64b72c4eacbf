"""What `status` reports for one engine: states, out-of-sync and lag bytes, resync
progress, generations, the fencing epoch and the NBD export."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from drorch.clock import iso_utc as iso_time
from drorch.replication.base import ConnState, DiskState, ReplicationStatus, Role
from drorch.replication.pyrepl import dual, freeze, modeswitch

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine


def engine_status(engine: Engine) -> ReplicationStatus:
    with engine.cond:
        now = engine.clock.monotonic()
        s = engine.session if engine.session is not None and engine.session.alive else None
        conn = engine.connection()
        oos = (engine.bitmap.count - engine.ship.activity_regions) * engine.config.region_size
        if conn == ConnState.SYNC_TARGET and engine.progress is not None:
            oos = max(oos, engine.progress.remaining_bytes)
        pct = 100.0 - 100.0 * oos / engine.config.size if engine.config.size else 100.0
        extra: dict[str, Any] = {
            "last_error": engine.last_error,
            "split_brain": engine.split_brain,
            "stats": dict(engine.stats),
            "resync": engine.progress.as_dict(now) if engine.progress else None,
            "region_size": engine.config.region_size,
            "size": engine.config.size,
            "ahead": bool(s and s.ahead),
            "node_id": engine.meta.node_id,
            "sync_write_latency_us": _latency(engine),
            **freeze.status(engine),
            "peer_outdated_since": iso_time(engine.meta.peer_outdated_since),
            "outdated_since": iso_time(engine.meta.outdated_since),
            "two_primaries": dual.status(engine),
            **modeswitch.status(engine),
            **engine.ledger.status(),
        }
        return ReplicationStatus(
            name=engine.meta.name,
            role=engine.role,
            disk=engine.meta.disk,
            connection=conn,
            mode=engine.mode,
            peer_disk=s.peer.disk if s else DiskState.UNKNOWN,
            peer_role=s.peer.role if s else Role.UNKNOWN,
            out_of_sync_bytes=max(oos, 0),
            lag_bytes=s.lag_bytes if s else 0,
            percent_in_sync=round(max(pct, 0.0), 2),
            resync_eta_seconds=(
                engine.progress.eta_seconds(now)
                if engine.progress and engine.progress.finished is None
                else None
            ),
            epoch=engine.meta.epoch,
            generation=engine.meta.generation.as_dict(),
            nbd=engine.nbd_uri,
            extra=extra,
        )


def _latency(engine: Engine) -> dict[str, float | int] | None:
    """Median and 99th percentile of the last sync writes, inside the server: from the
    write entering the engine until it is durable on both sides."""
    samples: list[float] = []
    for _ in range(5):  # appended to by the link thread; a copy may race with it
        try:
            samples = sorted(engine.sync_latency)
            break
        except RuntimeError:
            continue
    if not samples:
        return None
    return {
        "count": len(samples),
        "median": round(statistics.median(samples) * 1e6, 1),
        "p99": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e6, 1),
    }
