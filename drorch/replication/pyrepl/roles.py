"""Role and connection operations of the engine: promote, demote, connect, disconnect,
resolve. Each validates under the engine lock, then waits (outside it) until a connected
peer has acknowledged the change, so a caller that returns can rely on the peer knowing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationError,
    Role,
    StaleEpoch,
    UnsafeOperation,
)
from drorch.replication.pyrepl import resync, writes

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine
    from drorch.replication.pyrepl.session import PeerSession


def promote(engine: Engine, epoch: int | None, *, force: bool, accept_data_loss: bool) -> str:
    """Become primary; returns once the connected peer (if any) has acknowledged."""
    with engine.cond:
        was_primary = engine.role == Role.PRIMARY
        message = _promote(engine, epoch, force=force, accept_data_loss=accept_data_loss)
        pending = _announce(engine, role=True, epoch=epoch is not None or not was_primary)
    _await_peer(pending)
    return message


def _promote(engine: Engine, epoch: int | None, *, force: bool, accept_data_loss: bool) -> str:
    if epoch is not None and epoch < engine.meta.epoch:
        raise StaleEpoch(
            f"epoch {epoch} is older than epoch {engine.meta.epoch} already seen; "
            "a newer primary exists"
        )
    if engine.role == Role.PRIMARY:
        if epoch is not None and epoch > engine.meta.epoch:
            engine.save(epoch=epoch)
            return f"already primary; fencing epoch raised to {epoch}"
        return "already primary"
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
        raise ReplicationError("the peer is primary; demote it first")
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


def demote(engine: Engine) -> str:
    with engine.cond:
        if engine.role == Role.SECONDARY:
            return "already secondary"
        engine.role = Role.SECONDARY
        pending = _announce(engine, role=True, epoch=False)
        engine.cond.notify_all()
    _await_peer(pending)
    writes.quiesce_activity(engine)
    return "demoted to secondary"


def disconnect(engine: Engine) -> str:
    with engine.cond:
        engine.want_connect = False
        if engine.session is not None:
            engine.session.close("disconnected by the operator")
        engine.cond.notify_all()
    return "StandAlone"


def connect(engine: Engine) -> None:
    with engine.cond:
        engine.want_connect = True
        engine.split_brain = None
        engine.cond.notify_all()


def resolve_discard_local(engine: Engine) -> str:
    with engine.cond:
        if engine.role == Role.PRIMARY:
            raise ReplicationError("refusing to discard local data while primary; demote first")
        engine.save(discard_local=True)
        engine.want_connect = True
        engine.split_brain = None
        engine.last_error = None
        engine.cond.notify_all()
    return "local changes will be discarded: resync from the peer on connect"
