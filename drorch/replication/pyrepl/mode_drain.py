"""The async -> sync drain of a live mode switch (modeswitch.py has the whole story).

`Switch` is the switch in progress (draining, then flipped); `poll` flips it once the
peer holds everything but at most `DRAIN_LAG` queued bytes (`not_ready` says what it
still waits for), and the peer's acknowledgement of the MODE frame finishes it;
`link_lost` finishes a flipped switch the link cut before that acknowledgement;
`drain_limit` is the async send queue's bound meanwhile.

Every function here runs with the engine's lock held.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drorch.replication.base import ConnState, DiskState, Role
from drorch.replication.pyrepl import freeze
from drorch.replication.pyrepl.wire import FrameType

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine
    from drorch.replication.pyrepl.session import PeerSession

log = logging.getLogger("drorch.pyrepl")

DRAIN_LAG = 1024 * 1024  # draining: the send queue's bound, and the flip's


@dataclass
class Switch:
    """An async -> sync switch in progress (`phase` draining, then flipped)."""

    to: str
    started: float  # monotonic
    started_at: float  # wall clock, for status
    backlog_bytes: int  # queued + out of sync when it began
    phase: str = "draining"
    waiting_for: str = ""

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "to": self.to,
            "phase": self.phase,
            "seconds": round(now - self.started, 2),
            "backlog_bytes_at_start": self.backlog_bytes,
            "waiting_for": self.waiting_for or None,
        }


def out_of_sync_bytes(engine: Engine) -> int:
    return max(0, engine.bitmap.count - engine.ship.activity_regions) * engine.config.region_size


def not_ready(engine: Engine, s: PeerSession | None) -> str:
    """What the flip still waits for ("" when nothing)."""
    if engine.role != Role.PRIMARY:
        return "this side to be primary"
    if s is None or not s.alive:
        return "the peer to connect"
    if s.ahead:
        return f"the peer to catch up (pulled ahead, {s.lag_bytes} bytes in flight)"
    if s.state != ConnState.CONNECTED or engine.ship.pending:
        left = engine.progress.remaining_bytes if engine.progress else 0
        return f"the resync to finish ({left} bytes left)"
    if s.peer.disk != DiskState.UP_TO_DATE:
        return f"the peer's disk to be UpToDate (it is {s.peer.disk.value})"
    oos = out_of_sync_bytes(engine)
    if oos:
        return f"{oos} bytes out of sync to be resynced (disconnect and connect)"
    if s.lag_bytes > DRAIN_LAG:
        return f"{s.lag_bytes} queued bytes to drain"
    return ""


def poll(engine: Engine) -> None:
    """Flip a draining switch if the peer is ready (cheap; called on every ack)."""
    sw = engine.switch
    if sw is None or sw.phase != "draining":
        return
    s = engine.session
    sw.waiting_for = not_ready(engine, s)
    if sw.waiting_for or s is None:
        return
    engine.mode = "sync"
    sw.phase = "flipped"
    if engine.meta.peer_outdated:  # connected and UpToDate: guarded again from now
        freeze.peer_current(engine)
        if engine.fence_hook is not None:
            engine.fence_hook.unfence()

    def finished() -> None:
        if engine.switch is sw:
            _finish(engine, sw, "the peer acknowledged the switch")

    body = {"mode": "sync", "serial": engine.meta.mode_serial}
    s.enqueue_control(FrameType.MODE, body, on_ack=finished)
    log.info(
        "%s: sync from now on (%d bytes still queued, acknowledged before any sync write)",
        engine.meta.name,
        s.lag_bytes,
    )


def _finish(engine: Engine, sw: Switch, how: str, *, confirmed: bool = True) -> None:
    """`confirmed` False: the link went before the peer acknowledged MODE, so it may lack
    up to DRAIN_LAG of the acknowledged async backlog; `set-mode` and the driver report
    that as a failure, not as done."""
    engine.switch = None
    engine.save(mode_switching=False)
    engine.last_switch = {
        "to": sw.to,
        "seconds": round(engine.clock.monotonic() - sw.started, 3),
        "backlog_bytes_at_start": sw.backlog_bytes,
        "finished": how,
        "confirmed": confirmed,
    }
    log.info("%s: switched to sync in %.2f s", engine.meta.name, engine.last_switch["seconds"])
    engine.cond.notify_all()


def link_lost(engine: Engine) -> None:
    """Flipped but MODE not acknowledged: the mode is sync (the freeze guards it); the
    peer adopts it at the next connect (its serial is lower)."""
    sw = engine.switch
    if sw is not None and sw.phase == "flipped":
        _finish(
            engine,
            sw,
            "the link was lost after the flip, before the peer confirmed it held the backlog;"
            " it adopts sync and resyncs on connect",
            confirmed=False,
        )


def drain_limit(engine: Engine) -> int:
    """The async send queue's bound: `max_lag_bytes`, or DRAIN_LAG while draining."""
    limit = engine.config.max_lag_bytes
    return min(limit, DRAIN_LAG) if engine.switch is not None else limit
