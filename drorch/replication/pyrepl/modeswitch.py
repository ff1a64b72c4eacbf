"""Switching a running volume between sync and async (DRBD's `drbdadm net-options
--protocol C|A`), without a restart and without losing, reordering or tearing a write.

**sync -> async** takes effect at once: writes that entered in sync mode keep their
promise (they were queued durable and are acknowledged once the peer has them); every
later write is acknowledged once local. Refused while two primaries are allowed (they
need sync), and on a frozen primary unless the data loss is accepted (the held writes
would be acknowledged without the peer).

**async -> sync** never acknowledges a write as sync (RPO 0) before the peer really holds
everything: the switch *drains* first.

1. The request is recorded durably (`meta.mode` sync, `mode_switching`); the primary
   keeps acknowledging as async meanwhile, but stops pulling ahead and lets at most
   `DRAIN_LAG` bytes queue (writers wait for room: the backlog shrinks even under load).
2. Once the peer is connected, UpToDate, not behind (no pull-ahead, no resync left, no
   region out of sync) and at most `DRAIN_LAG` bytes are queued, the engine *flips*
   under its lock: every later write is queued durable and acknowledged only when the
   peer has it on disk, and a MODE frame goes to the peer in stream order. Acks are
   cumulative and the peer fsyncs before it acknowledges MODE, so the first sync
   acknowledgement implies the whole async backlog before it is durable there too.
3. The peer's acknowledgement of MODE finishes the switch (`mode_switching` cleared).

A link cut while draining: writes go on as async (as before the request) and the switch
waits for the peer's return and resync. A kill -9 while draining, or after the flip but
before MODE was acknowledged: the next start finds `mode_switching` and drains again.

The mode a volume runs in survives a restart: `meta.mode` with `mode_serial` > 0 (a live
switch happened) overrides `--mode` (the config file), so a volume switched to sync for
a hurricane move does not come back async after a crash halfway; the log and status say
so (`mode_source`). Back to the config's mode: `drorch repl set-mode` again. At connect,
differing modes with the same serial are a misconfiguration (refused, link.py); a higher
serial is a later live switch, which the other side adopts.

The drain itself (the switch in progress, what the flip waits for, the flip, the send
queue's bound meanwhile) is in mode_drain.py; here: the requests, the mode at start and
at connect, and the peer's MODE frames.

Every function here runs with the engine's lock held.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from drorch.replication.base import (
    ReplicationError,
    Role,
    UnsafeOperation,
)
from drorch.replication.pyrepl import freeze
from drorch.replication.pyrepl.mode_drain import Switch, not_ready, out_of_sync_bytes, poll
from drorch.replication.pyrepl.mode_options import (
    ASYNC_OPTIONS as ASYNC_OPTIONS,
)
from drorch.replication.pyrepl.mode_options import (
    MODES as MODES,
)
from drorch.replication.pyrepl.mode_options import (
    SYNC_OPTIONS as SYNC_OPTIONS,
)
from drorch.replication.pyrepl.mode_options import option_keys, resolve_options
from drorch.replication.pyrepl.wire import FrameType, WireError

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine
    from drorch.replication.pyrepl.engine_config import EngineConfig
    from drorch.replication.pyrepl.handshake import SideView

log = logging.getLogger("drorch.pyrepl")


def at_start(engine: Engine, config: EngineConfig) -> EngineConfig:
    """Called once the metadata is loaded: the config the engine runs with. A live mode
    (serial > 0) overrides the one given at start; an unfinished async -> sync switch
    resumes (the engine runs async until it drains again)."""
    meta = engine.meta
    if not meta.mode_serial or meta.mode not in MODES:
        if meta.mode != config.mode:
            engine.save(mode=config.mode)
        return config
    opts = {k: v for k, v in meta.mode_options.items() if k in option_keys(meta.mode)}
    live = replace(config, mode=meta.mode, **opts)
    if meta.mode != config.mode:
        log.warning(
            "%s: replicating %s as last switched live (switch %d), not --mode %s; "
            "`drorch repl set-mode %s` returns to the config's mode",
            meta.name,
            meta.mode,
            meta.mode_serial,
            config.mode,
            config.mode,
        )
    return live


def resume(engine: Engine) -> None:
    """After start: an interrupted async -> sync switch drains again."""
    if engine.meta.mode_switching and engine.meta.mode == "sync":
        engine.mode = "async"
        if engine.role == Role.PRIMARY:
            engine.switch = Switch("sync", engine.clock.monotonic(), engine.clock.now(), 0)
            log.warning("%s: resuming an unfinished switch to sync", engine.meta.name)
        else:  # a secondary acknowledges nothing itself: nothing to drain
            engine.mode = "sync"
            engine.save(mode_switching=False)


# ---------------------------------------------------------------------- requests
def request(
    engine: Engine, mode: str, given: dict[str, Any], *, accept_data_loss: bool = False
) -> str:
    """`set-mode`: switch (see the module docstring). Returns what happened; the caller
    follows an async -> sync drain through status (`mode_switch`)."""
    opts = resolve_options(engine, mode, given)
    if engine.role != Role.PRIMARY:
        _apply(engine, mode, opts, serial=_next_serial(engine))
        engine.switch = None
        s = engine.session
        note = ""
        if s is not None and s.alive and s.peer.role == Role.PRIMARY and s.peer.mode != mode:
            note = f"; the primary replicates {s.peer.mode}: switch it there"
        return f"secondary set to {mode}{note}"
    if mode == "async":
        return _to_async(engine, opts, accept_data_loss=accept_data_loss)
    if engine.mode == "sync" and engine.switch is None:
        _apply(engine, "sync", opts, serial=engine.meta.mode_serial, effective=False)
        s = engine.session
        waiting = not_ready(engine, s)
        if not waiting:
            return "already sync"
        # sync, but the peer lacks data (sync adopted at connect mid-resync; the peer away):
        # followed like a drain, not persisted (a restart must not resume it as async)
        backlog = (s.lag_bytes if s is not None and s.alive else 0) + out_of_sync_bytes(engine)
        now = engine.clock.monotonic()
        engine.switch = Switch("sync", now, engine.clock.now(), backlog, waiting_for=waiting)
        return f"sync, not drained yet: waiting for {waiting}"
    if engine.switch is not None:
        _apply(engine, "sync", opts, serial=engine.meta.mode_serial, effective=False)
        return "switching to sync: draining"
    _apply(engine, "sync", opts, serial=_next_serial(engine), effective=False, switching=True)
    s = engine.session
    backlog = s.lag_bytes if s is not None and s.alive else 0
    backlog += out_of_sync_bytes(engine)
    engine.switch = Switch("sync", engine.clock.monotonic(), engine.clock.now(), backlog)
    log.info("%s: switching to sync: draining %d bytes", engine.meta.name, backlog)
    poll(engine)
    if engine.switch is None or engine.switch.phase != "draining":
        return "switched to sync"
    return f"switching to sync: draining ({engine.switch.waiting_for})"


def would_request(
    engine: Engine, mode: str, given: dict[str, Any], *, accept_data_loss: bool = False
) -> str:
    """`request`'s dry run: the same refusals, and what it would do; nothing changes."""
    resolve_options(engine, mode, given)  # the same option errors
    if engine.role != Role.PRIMARY:
        return f"would set this secondary to {mode} (the primary decides what is acknowledged)"
    if mode == "async":
        _async_refusal(engine, accept_data_loss)
        if engine.switch is None and engine.mode == engine.meta.mode == "async":
            return "already async"
        return (
            "would switch to async at once: writes are acknowledged before the peer holds"
            " them (RPO up to the lag)"
        )
    if engine.switch is not None:
        return "already switching to sync: draining"
    if engine.mode == "sync":
        return "already sync"
    s = engine.session
    backlog = (s.lag_bytes if s is not None and s.alive else 0) + out_of_sync_bytes(engine)
    return (
        f"would switch to sync: drain the {backlog} bytes the peer lacks, then acknowledge"
        " only what both hold"
    )


def _async_refusal(engine: Engine, accept_data_loss: bool) -> None:
    if engine.meta.two_primaries or engine.dual.second:
        raise ReplicationError(
            f"{engine.meta.name}: two primaries are allowed (they need sync); forbid them first"
        )
    if engine.mode == "sync" and engine.freeze.frozen and not accept_data_loss:
        raise UnsafeOperation(
            f"{engine.meta.name}: I/O is frozen ({engine.freeze.reason}): in async mode the "
            f"{len(engine.freeze.held)} held and every waiting write would be acknowledged "
            "without the peer, which is not recorded Outdated; --accept-data-loss to do it"
        )


def _to_async(engine: Engine, opts: dict[str, Any], *, accept_data_loss: bool) -> str:
    _async_refusal(engine, accept_data_loss)
    was = "switching to sync" if engine.switch is not None else engine.mode
    engine.switch = None
    if engine.mode == "async" and engine.meta.mode == "async" and was == "async":
        _apply(engine, "async", opts, serial=engine.meta.mode_serial)
        return "already async"
    _apply(engine, "async", opts, serial=_next_serial(engine))
    _announce(engine, "async")
    if engine.freeze.frozen:  # accepted: what was held is acknowledged now
        freeze.complete_later(engine, freeze.end(engine, "switched to async (data loss accepted)"))
    log.info("%s: switched to async (was %s)", engine.meta.name, was)
    return f"switched to async (was {was})"


def _next_serial(engine: Engine) -> int:
    s = engine.session
    peer = s.peer.mode_serial if s is not None and s.alive else 0
    return max(engine.meta.mode_serial, peer) + 1


def _apply(
    engine: Engine,
    mode: str,
    opts: dict[str, Any],
    *,
    serial: int,
    effective: bool = True,
    switching: bool = False,
) -> None:
    """Record (durably first) and use `mode` with `opts`."""
    engine.save(mode=mode, mode_serial=serial, mode_switching=switching, mode_options=opts)
    old_hook = engine.config.fence_peer_cmd, engine.config.unfence_peer_cmd
    engine.config = replace(engine.config, mode=mode, **opts)
    if (engine.config.fence_peer_cmd, engine.config.unfence_peer_cmd) != old_hook:
        engine.replace_fence_hook()
    if effective:
        engine.mode = mode
    engine.cond.notify_all()


def _announce(engine: Engine, mode: str) -> int:
    s = engine.session
    if s is None or not s.alive:
        return 0
    body = {"mode": mode, "serial": engine.meta.mode_serial}
    return s.enqueue_control(FrameType.MODE, body)


# ---------------------------------------------------------------------- the peer
def on_mode_frame(engine: Engine, body: dict[str, Any]) -> None:
    """MODE from the peer (in stream order): everything before it is made durable first,
    so its acknowledgement means the peer holds the whole backlog."""
    mode, serial = str(body.get("mode")), body.get("serial", 0)
    if mode not in MODES or not isinstance(serial, int) or isinstance(serial, bool):
        raise WireError(f"MODE frame with mode {mode!r}, serial {serial!r}")
    engine.backing.sync()
    if serial < engine.meta.mode_serial:
        return  # an older switch than one already seen here
    adopt(engine, mode, serial, "the primary switched")


def adopt(engine: Engine, mode: str, serial: int, why: str) -> None:
    opts = resolve_options(engine, mode, {})
    changed = mode != engine.mode
    _apply(engine, mode, opts, serial=serial)
    engine.switch = None
    if changed:
        log.info("%s: replicating %s from now on (%s)", engine.meta.name, mode, why)


def at_connect(engine: Engine, peer: SideView) -> None:
    """Both sides, on connect: a later live switch (higher serial) is adopted, but a
    sync primary never turns async because its secondary was set so (RPO 0 is given up
    on the primary only: attack, a link blip did it)."""
    if peer.mode in MODES and peer.mode_serial > engine.meta.mode_serial:
        if (
            peer.mode == "async"
            and engine.mode == "sync"
            and engine.role == Role.PRIMARY
            and peer.role != Role.PRIMARY
        ):
            name, serial = engine.meta.name, peer.mode_serial
            log.warning(
                "%s: the secondary was set to async (switch %d); staying sync", name, serial
            )
            return
        if peer.mode != engine.meta.mode:
            adopt(engine, peer.mode, peer.mode_serial, f"the peer's switch {peer.mode_serial}")
        else:
            engine.save(mode_serial=peer.mode_serial)
    elif _primary_decides(engine, peer) and peer.role == Role.PRIMARY:
        adopt(engine, peer.mode, peer.mode_serial, "the primary's switch of the same serial")


def _primary_decides(engine: Engine, peer: SideView) -> bool:
    """Both switched live while apart, to one serial and two modes: the primary's wins
    (attack: refused as a misconfiguration, the pair stayed apart for good)."""
    return (
        peer.mode in MODES
        and peer.mode != (engine.meta.mode or engine.mode)
        and peer.mode_serial == engine.meta.mode_serial > 0
        and (peer.role == Role.PRIMARY) != (engine.role == Role.PRIMARY)
    )


def refusal(engine: Engine, peer: SideView) -> str:
    """A peer in another mode with the same serial: both were configured so. Refused:
    a sync primary must never count an async peer's acknowledgement as on both disks."""
    mine = engine.meta.mode or engine.mode
    if _primary_decides(engine, peer):
        return ""
    if peer.mode and peer.mode != mine and peer.mode_serial == engine.meta.mode_serial:
        return (
            f"refused a peer in {peer.mode} mode: this side replicates {mine};"
            " both sides of a volume must use the same mode"
        )
    return ""


def status(engine: Engine) -> dict[str, Any]:
    sw = engine.switch
    start = engine.start_config.mode
    return {
        "mode_switch": sw.as_dict(engine.clock.monotonic()) if sw is not None else None,
        "mode_last_switch": engine.last_switch,
        "mode_source": {
            "live": bool(engine.meta.mode_serial),
            "serial": engine.meta.mode_serial,
            "started_as": start,
        },
    }
