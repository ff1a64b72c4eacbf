"""Role and connection operations of the engine: promote, demote, connect, disconnect,
resolve. Each validates under the engine lock, then waits (outside it) until a connected
peer has acknowledged the change, so a caller that returns can rely on the peer knowing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from drorch.replication.base import (
    ConnState,
    DiskState,
    Role,
    StaleEpoch,
    UnsafeOperation,
)
from drorch.replication.pyrepl import dual, freeze, resync, writes
from drorch.replication.pyrepl.wire import FrameType

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine
    from drorch.replication.pyrepl.session import PeerSession


def promote(
    engine: Engine,
    epoch: int | None,
    *,
    force: bool,
    accept_data_loss: bool,
    dry_run: bool = False,
) -> str:
    """Become primary; returns once the connected peer (if any) has acknowledged.
    `dry_run`: every refusal of the real promotion, and what it would do; no change."""
    with engine.cond:
        was_primary = engine.role == Role.PRIMARY
        message = _promote(
            engine, epoch, force=force, accept_data_loss=accept_data_loss, dry_run=dry_run
        )
        if dry_run:
            return message
        pending = _announce(engine, role=True, epoch=epoch is not None or not was_primary)
    _await_peer(pending)
    return message


def _promote(
    engine: Engine, epoch: int | None, *, force: bool, accept_data_loss: bool, dry_run: bool
) -> str:
    if epoch is not None and epoch < engine.meta.epoch:
        raise StaleEpoch(
            f"epoch {epoch} is older than epoch {engine.meta.epoch} already seen; "
            "a newer primary exists: a promotion needs an epoch greater than"
            f" {engine.meta.epoch} (the witness's grant, or leave --epoch out)"
        )
    if engine.role == Role.PRIMARY:
        if engine.dual.second and epoch is not None and epoch > engine.meta.epoch:
            return dual.later_epoch(engine, epoch)  # never fence the first primary
        if epoch is not None and epoch > engine.meta.epoch:
            if dry_run:
                return f"would raise the fencing epoch to {epoch} (already primary)"
            engine.save(epoch=epoch)
            return f"already primary; fencing epoch raised to {epoch}"
        return "already primary"
    s = engine.session
    if s is not None and s.alive and s.peer.role == Role.PRIMARY:
        return dual.join(engine, epoch, dry_run=dry_run)  # joins the first one's epoch
    # A new primary takes a fencing epoch no primary of this volume had before: equal is
    # refused (two primaries would share it), none given means one above all seen here.
    if epoch is not None and epoch == engine.meta.epoch:
        raise StaleEpoch(
            f"epoch {epoch} was already seen here: a promotion needs an epoch greater than"
            f" {engine.meta.epoch} (the witness's grant, or leave --epoch out)"
        )
    if epoch is None:
        epoch = engine.meta.epoch + 1
    s = engine.session
    if s is not None and s.alive and s.peer.role == Role.PRIMARY:
        raise UnsafeOperation("the peer is primary; demote it first")
    if engine.meta.disk == DiskState.DISKLESS:
        raise UnsafeOperation(
            f"local disk is Diskless ({engine.last_error or 'detached'}): there is no "
            "data here to serve; promote the peer"
        )
    forced = force and accept_data_loss
    if engine.meta.disk != DiskState.UP_TO_DATE and not forced:
        raise UnsafeOperation(
            f"local disk is {engine.meta.disk.value}, not UpToDate: promoting would "
            "serve stale or half-synced data; use --force --accept-data-loss"
        )
    not_current = engine.meta.disk != DiskState.UP_TO_DATE
    if dry_run:
        forced_note = " by force (disk declared UpToDate)" if not_current else ""
        return f"would promote{forced_note} at epoch {epoch}"
    if s is not None and s.alive and s.state == ConnState.SYNC_TARGET:
        s.close("forced promote during resync")
    reason = "promoted"
    if engine.meta.disk != DiskState.UP_TO_DATE:
        engine.save(disk=DiskState.UP_TO_DATE, generation=engine.meta.generation.diverge())
        reason = "promoted by force: disk declared UpToDate (data loss accepted)"
    if epoch is not None and epoch > engine.meta.epoch:
        engine.save(epoch=epoch)
    engine.role = Role.PRIMARY
    s = engine.session
    if forced and (s is None or not s.alive):
        # --force --accept-data-loss with no peer: the operator's outdate-peer too, so
        # the first write does not freeze (nothing else would ever release it here)
        freeze.peer_outdated(engine, "promoted by force with the peer away (data loss accepted)")
    peer_empty = s is not None and s.alive and s.peer.disk == DiskState.INCONSISTENT
    if s is not None and peer_empty and s.state == ConnState.CONNECTED:
        # day 0: the first full sync starts now
        resync.queue_regions(engine, full=True)
        engine.start_resync(s, "initial full sync after a forced promote")
    engine.cond.notify_all()
    return f"{reason} at epoch {engine.meta.epoch}"


def _announce(engine: Engine, *, role: bool, epoch: bool) -> tuple[PeerSession, int] | None:
    """Queue ROLE/EPOCH for a connected peer (caller holds the lock)."""
    s = engine.session
    if s is None or not s.alive:
        return None
    seq = 0
    if epoch and engine.meta.epoch != s.peer_epoch_seen:
        seq = s.announce_epoch()
    if role:
        seq = s.announce_role()
    return (s, seq) if seq else None


def _await_peer(pending: tuple[PeerSession, int] | None) -> None:
    if pending is not None:
        pending[0].wait_acked(pending[1])


def demote(engine: Engine, *, dry_run: bool = False) -> str:
    with engine.cond:
        if engine.role == Role.SECONDARY:
            return "already secondary"
        if dry_run:
            held = len(engine.freeze.held)
            return "would demote to secondary" + (
                f" ({held} held writes would fail with EIO)" if held else ""
            )
        # held acknowledgements of a frozen or stale primary are never given: EIO
        engine.freeze.stale = engine.freeze.stale or "demoted while writes were held"
        failed = freeze.end(engine, "demoted")
        engine.freeze.stale = None
        engine.role = Role.SECONDARY
        dual.demoted(engine)
        pending = _announce(engine, role=True, epoch=False)
        engine.cond.notify_all()
    freeze.complete(engine, failed)
    _await_peer(pending)
    writes.quiesce_activity(engine)
    return "demoted to secondary"


def would_disconnect(engine: Engine) -> str:
    """What `disconnect` would do (it refuses nothing); changes nothing."""
    with engine.cond:
        s = engine.session
        if s is None or not s.alive:
            return "would stay StandAlone (not connected now) and stop reconnecting"
        if s.shipping and freeze.guards(engine):
            return (
                f"would disconnect ({s.state.value}): the peer is told first that its copy is"
                " Outdated, then this primary writes alone; writes are no longer replicated"
            )
        return f"would disconnect ({s.state.value}): writes are no longer replicated"


def disconnect(engine: Engine) -> str:
    """Go StandAlone. A shipping primary first tells the peer that it is Outdated (as
    DRBD's graceful disconnect does) and waits for the acknowledgement: the peer's disk
    says so durably, so the primary goes on alone without freezing. If the peer never
    acknowledges, the link loss freezes a resource-only primary as any other would."""
    with engine.cond:
        engine.want_connect = False
        s = engine.session
        pending = None
        if s is not None and s.alive and s.shipping and freeze.guards(engine):
            why = "the primary disconnected on purpose; this copy misses its later writes"
            pending = (s, s.enqueue_control(FrameType.OUTDATE, {"reason": why}))
    _await_peer(pending)
    with engine.cond:
        items: list[tuple[freeze.Held, bool]] = []
        if pending is not None and pending[0].acked >= pending[1]:
            pending[0].update_peer(disk=DiskState.OUTDATED)
            items = freeze.peer_outdated(engine, "the peer outdated itself (planned disconnect)")
        if engine.session is not None:
            engine.session.close("disconnected by the operator")
        engine.cond.notify_all()
    freeze.complete(engine, items)
    return "StandAlone"


def connect(engine: Engine) -> None:
    with engine.cond:
        engine.want_connect = True
        engine.split_brain = None
        engine.cond.notify_all()


def resolve_discard_local(engine: Engine) -> str:
    with engine.cond:
        if engine.role == Role.PRIMARY:
            raise UnsafeOperation("refusing to discard local data while primary; demote first")
        engine.save(discard_local=True)
        engine.want_connect = True
        engine.split_brain = None
        engine.last_error = None
        engine.cond.notify_all()
    return "local changes will be discarded: resync from the peer on connect"


def outdate_peer(engine: Engine, *, accept_data_loss: bool, dry_run: bool = False) -> str:
    """The operator declares the peer Outdated: a frozen primary resumes alone. Without
    the acknowledgement it is refused: if this site is then lost, the peer's copy lacks
    every write acknowledged from now on, and nothing (no witness record) says so.
    `dry_run`: the same refusals, and what it would do; nothing changes."""
    with engine.cond:
        if engine.role != Role.PRIMARY:
            raise UnsafeOperation("outdate-peer is for a primary; this side is secondary")
        s = engine.session
        if s is not None and s.alive and s.state in (ConnState.CONNECTED, ConnState.SYNC_SOURCE):
            raise UnsafeOperation(
                f"the peer is connected ({s.state.value}) and receives every write: there is "
                "nothing to outdate"
            )
        if not accept_data_loss:
            raise UnsafeOperation(
                "outdating the peer lets this side acknowledge writes the peer never gets; "
                "if this site is then lost, they are lost, and no witness record warns the "
                "peer's promotion: give --accept-data-loss (or let the fence-peer hook ask "
                "the witness)"
            )
        frozen = engine.freeze.frozen
        if dry_run:
            return "would outdate the peer" + (
                ": I/O resumes, the held writes are acknowledged" if frozen else ""
            )
        items = freeze.peer_outdated(engine, "the operator outdated the peer (data loss accepted)")
    freeze.complete(engine, items)
    held = sum(ok for _, ok in items)
    if frozen:
        return f"peer outdated by the operator: I/O resumed, {held} held writes acknowledged"
    return "peer outdated by the operator: writes go on without it"
