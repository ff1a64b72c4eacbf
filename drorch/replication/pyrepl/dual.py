"""Two primaries for a live hand-over (DRBD's `allow-two-primaries`), sync mode only.

A live migration needs the disk writable at both sites for a moment: the destination
QEMU opens it before the guest moves. The plan is allow → promote the target as
*second* primary → migrate → demote the source → forbid.

**Allowing.** `allow_two_primaries` is refused unless the volume replicates `sync`, is
Connected (no resync) and both disks are UpToDate. The flag is persisted in the metadata
(`meta.two_primaries`, so a restart keeps it) and sent to the peer (a DUAL frame, acked),
which records it too. `forbid_two_primaries` is refused while both sides are primary,
and while this side is an orphaned second primary (below).

**One write order.** Only the *first* primary (the one that was primary when the other
was promoted) writes through the normal path. The second primary **forwards** each
write and zero-range over the replication link (FWD_DATA / FWD_ZERO); the first applies
it through its own write path (local write, shipped back as DATA, durable on both sides
before its acknowledgement arrives) and answers FWD_DONE after the DATA in stream order.
The second acknowledges its client only then, so a read at either side sees every
acknowledged write, and both disks hold the same bytes in the same order. A flush at the
second primary is local: every write it acknowledged is already durable on both disks.

**Epochs.** A second primary *joins* the first one's fencing epoch: it does not raise it
(a newer epoch would fence the first primary, which is still writing: its QEMU runs until
the migration ends). Promoting as second primary with an epoch older than the one seen is
refused (StaleEpoch); with a newer one (the plan's next quorum epoch) it is remembered as
the *hand-over epoch* and taken when the first primary demotes.

**Hand-over.** When the first primary demotes, its ROLE frame reaches the second after
every DATA frame it shipped. From that frame on the second is the sole primary: it takes
the hand-over epoch (and announces it), and writes go through its own normal path, with
no interruption of its NBD connections. Forwarded writes that reached the first after it
demoted are answered RETRY, in stream order, and the second applies them itself.

**Link failure while both are primary.** The second primary never writes on its own: it
holds nothing the first has not written. When the link drops it becomes *orphaned*: every
forwarded write still waiting and every new write, zero and flush fails with EIO at once
(never acknowledged, never diverging); reads keep being served. It stays so until it is
demoted (the first primary, alone, follows its own fencing policy). A forwarded write the
first primary does not answer within FORWARD_TIMEOUT drops the link the same way.

Functions named `*_locked` or documented so run with the engine lock held.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationError,
    Role,
    StaleEpoch,
    UnsafeOperation,
)
from drorch.replication.pyrepl.errors import WireError
from drorch.replication.pyrepl.wire import FrameType

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine
    from drorch.replication.pyrepl.forwarding import Applier, Forward
    from drorch.replication.pyrepl.session import PeerSession

log = logging.getLogger("drorch.pyrepl")


@dataclass
class DualState:
    peer_allows: bool = False  # what the connected peer last said about its flag
    peer_second: bool = False  # (first primary) the peer was promoted beside us
    second: bool = False  # promoted beside a primary peer: this side forwards
    handover_epoch: int | None = None  # taken when the first primary demotes
    orphaned: str | None = None  # the link died while second: writes fail until demoted
    pending: dict[int, Forward] = field(default_factory=dict)
    pending_bytes: int = 0
    applier: Applier | None = None  # (first primary) applies the peer's forwards
    forwarded: int = 0
    retried: int = 0  # answered RETRY (the first demoted first) and applied here


# ---------------------------------------------------------------------- allow / forbid
def allowed(engine: Engine) -> bool:
    return engine.meta.two_primaries


def in_sync_refusal(engine: Engine) -> str | None:
    """Why two primaries may not be allowed (or joined) now; None: they may."""
    if engine.mode != "sync":
        return (
            f"two primaries need sync replication; {engine.meta.name} replicates "
            f"{engine.mode} (an async peer lags, so the two disks would differ)"
        )
    s = engine.session
    if s is None or not s.alive:
        return "two primaries need the peer connected (the volume is not Connected)"
    if s.state != ConnState.CONNECTED or s.ahead:
        return f"two primaries need the volume in sync, not {s.state.value}"
    if engine.meta.disk != DiskState.UP_TO_DATE or s.peer.disk != DiskState.UP_TO_DATE:
        return (
            f"two primaries need both disks UpToDate (local {engine.meta.disk.value}, "
            f"peer {s.peer.disk.value})"
        )
    return None


def both_primary(engine: Engine) -> bool:
    s = engine.session
    peer_primary = s is not None and s.alive and s.peer.role == Role.PRIMARY
    return engine.role == Role.PRIMARY and (peer_primary or engine.dual.second)


def would_allow(engine: Engine) -> str:
    """`allow`'s dry run: the same refusal, and what it would do; nothing changes."""
    with engine.cond:
        why = in_sync_refusal(engine)
        if why is not None:
            raise ReplicationError(f"{engine.meta.name}: {why}")
        if engine.meta.two_primaries:
            return "two primaries are already allowed: nothing to do"
        return "would allow two primaries, here and at the peer (it records it too)"


def allow(engine: Engine) -> str:
    """Control op: allow two primaries here and at the peer (waits for its ack)."""
    with engine.cond:
        why = in_sync_refusal(engine)
        if why is not None:
            raise ReplicationError(f"{engine.meta.name}: {why}")
        s = engine.session
        assert s is not None
        was = engine.meta.two_primaries
        if not was:
            engine.save(two_primaries=True)
        seq = s.enqueue_control(FrameType.DUAL, {"allow": True, "set": True})
    s.wait_acked(seq)
    with engine.cond:
        if s.acked < seq:
            if not was and not both_primary(engine):
                engine.save(two_primaries=False)
            raise ReplicationError(
                f"{engine.meta.name}: the link dropped before the peer recorded that two "
                "primaries are allowed; nothing changed"
            )
        engine.dual.peer_allows = True
    log.info("%s: two primaries allowed (both sides)", engine.meta.name)
    return "two primaries allowed" if not was else "two primaries already allowed"


def forbid(engine: Engine) -> str:
    """Control op: forbid two primaries again, here and (if connected) at the peer."""
    with engine.cond:
        d = engine.dual
        if d.orphaned is not None:
            raise ReplicationError(
                f"{engine.meta.name}: this side is a second primary cut off from the first "
                f"({d.orphaned}); demote it before forbidding two primaries"
            )
        if both_primary(engine):
            raise ReplicationError(
                f"{engine.meta.name}: both sides are primary; demote one before forbidding "
                "two primaries"
            )
        was = engine.meta.two_primaries
        if was:
            engine.save(two_primaries=False)
        s = engine.session
        seq = 0
        if s is not None and s.alive:
            seq = s.enqueue_control(FrameType.DUAL, {"allow": False, "set": True})
    if s is not None and seq:
        s.wait_acked(seq)
    return "two primaries forbidden" if was else "two primaries already forbidden"


def attached(engine: Engine, session: PeerSession) -> None:
    """A new session (lock held): tell the peer our flag when it is set."""
    engine.dual.peer_allows = False
    engine.dual.peer_second = False
    if engine.meta.two_primaries:
        session.enqueue_control(FrameType.DUAL, {"allow": True, "set": False})


def on_dual(session: PeerSession, body: dict[str, Any]) -> None:
    """The peer's DUAL frame (receiver thread): `set` changes our flag too."""
    eng = session.engine
    allow_ = body.get("allow") is True
    with eng.cond:
        if not session.alive:
            return
        eng.dual.peer_allows = allow_
        if body.get("set") is True and eng.meta.two_primaries != allow_:
            eng.save(two_primaries=allow_)
            log.info(
                "%s: the peer %s two primaries",
                eng.meta.name,
                "allowed" if allow_ else "forbade",
            )
        eng.cond.notify_all()


# ---------------------------------------------------------------------- roles
def join(engine: Engine, epoch: int | None, *, dry_run: bool = False) -> str:
    """Promote beside a primary peer (lock held; roles.promote announces the role).
    `dry_run`: every refusal, and what it would do; nothing changes."""
    name = engine.meta.name
    s = engine.session
    assert s is not None
    if not engine.meta.two_primaries or not engine.dual.peer_allows:
        where = "here" if not engine.meta.two_primaries else "at the peer"
        raise UnsafeOperation(
            f"{name}: the peer is primary and two primaries are not allowed {where}; "
            "demote it first, or allow two primaries (sync, in sync) for a live hand-over"
        )
    why = in_sync_refusal(engine)
    if why is not None:
        raise UnsafeOperation(f"{name}: cannot promote beside the primary peer: {why}")
    if epoch is not None and epoch < engine.meta.epoch:
        raise StaleEpoch(
            f"epoch {epoch} is older than epoch {engine.meta.epoch} already seen; "
            "a newer primary exists"
        )
    current = engine.meta.epoch
    d = engine.dual
    if dry_run:
        return f"would promote as second primary beside the primary peer, at epoch {current}"
    d.second, d.orphaned = True, None
    d.handover_epoch = epoch if epoch is not None and epoch > current else None
    engine.role = Role.PRIMARY
    engine.cond.notify_all()
    later = (
        f"; epoch {d.handover_epoch} is taken when the first primary demotes"
        if d.handover_epoch is not None
        else ""
    )
    log.warning("%s: promoted as second primary at epoch %d%s", name, current, later)
    return (
        f"promoted as second primary beside the primary peer, joining its epoch {current}"
        f"{later}; writes here are forwarded to it"
    )


def later_epoch(engine: Engine, epoch: int) -> str:
    """A second primary asked for a newer epoch (lock held): kept for the hand-over."""
    d = engine.dual
    d.handover_epoch = max(epoch, d.handover_epoch or 0)
    return (
        f"already second primary at epoch {engine.meta.epoch}; epoch {d.handover_epoch} is "
        "taken when the first primary demotes"
    )


def peer_joins(session: PeerSession) -> None:
    """The peer says it is primary while this side is (receiver thread)."""
    eng = session.engine
    with eng.cond:
        d = eng.dual
        if d.second or d.peer_second:
            return  # the first primary (or the second) announcing its role again
        if not eng.meta.two_primaries:
            raise WireError("the peer became primary while this side is primary")
        d.peer_second = True
        log.warning(
            "%s: the peer is now a second primary; it forwards its writes here",
            eng.meta.name,
        )


def peer_demoted(session: PeerSession) -> None:
    """The peer says it is secondary (receiver thread). If it was the first primary and
    this side the second, this is the hand-over: this side is now the sole primary."""
    eng = session.engine
    with eng.cond:
        d = eng.dual
        d.peer_second = False
        if not (d.second and eng.role == Role.PRIMARY):
            return
        d.second = False
        taken = ""
        if d.handover_epoch is not None and d.handover_epoch > eng.meta.epoch:
            eng.save(epoch=d.handover_epoch)
            session.announce_epoch()
            taken = f", epoch {d.handover_epoch}"
        d.handover_epoch = None
        eng.cond.notify_all()
    log.warning(
        "%s: the first primary demoted: this side is the sole primary%s", eng.meta.name, taken
    )


def demoted(engine: Engine) -> None:
    """This side demoted (lock held): no longer second, no longer orphaned."""
    d = engine.dual
    d.second, d.orphaned, d.handover_epoch = False, None, None


# ---------------------------------------------------------------------- status
def status(engine: Engine) -> dict[str, Any]:
    d = engine.dual
    if d.orphaned is not None:
        state = "orphaned"
    elif d.second and engine.role == Role.PRIMARY:
        state = "second-primary"
    elif d.peer_second and engine.role == Role.PRIMARY:
        state = "first-primary"
    else:
        state = "off"
    return {
        "allowed": engine.meta.two_primaries,
        "peer_allows": d.peer_allows,
        "state": state,
        "orphaned": d.orphaned,
        "handover_epoch": d.handover_epoch,
        "forwarding": len(d.pending),
        "forwarded": d.forwarded,
        "retried": d.retried,
    }
