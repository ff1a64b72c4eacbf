"""Resource-level fencing of a sync primary: DRBD's `fencing resource-only` + suspend-io.

The invariant, with `fencing: resource-only` in sync mode: a primary acknowledges a
write (or a flush) only when the peer has made it durable, or when the peer is recorded
Outdated (`meta.peer_outdated`, durable here) by one of:

- the fence-peer hook (fence_hook.py) exiting 0: the witness's record that only this
  site's copy is current is on the witness's disk;
- the operator's `drorch repl outdate-peer --accept-data-loss`;
- the peer's own disk: it acknowledged RS_BEGIN, so it is durably Inconsistent (a resync
  from this side has begun) and cannot be promoted without a data-loss acknowledgement.

Between losing the peer and one of those, the primary is *frozen*. New writes, zeroes
and flushes wait for the freeze to end, at most `freeze_timeout` seconds, and then fail
with EIO (never acknowledged). Writes that were in flight when the link died are already
durable here, but their acknowledgement is *held*: released when the freeze ends, failed
with EIO once held longer than the bound. Status reports the freeze, its reason, the
held writes and the hook's last answer.

A primary that learns of a newer fencing epoch (from its peer, or from a hook that says
the peer's site holds the lease) is *stale*: from that moment it acknowledges nothing;
held and in-flight writes fail with EIO and new ones are refused, until it is demoted.

`dont-care`, and async mode, keep the older behaviour: a write the peer did not get is
acknowledged once it is local, and the RPO is no longer 0.

Every function here runs with the engine's lock held, except `complete`, which calls
completions (NBD replies) and must run outside it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drorch.replication.base import ReplicationError, Role

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine
    from drorch.replication.pyrepl.session import PeerSession

log = logging.getLogger("drorch.pyrepl")

POLICIES = ("resource-only", "dont-care")
DEFAULT_FREEZE_TIMEOUT = 60.0
Done = Callable[[], None]
Fail = Callable[[Exception], None]


class FrozenIO(ReplicationError):
    """I/O held longer than `freeze_timeout` while the peer is not recorded Outdated
    (answered with EIO: the write is not acknowledged)."""


class StalePrimary(ReplicationError):
    """This primary learned of a newer fencing epoch: it acknowledges nothing more."""


@dataclass
class Held:
    done: Done
    fail: Fail | None
    since: float


@dataclass
class FreezeState:
    since: float | None = None  # monotonic time the freeze began; None: not frozen
    reason: str = ""
    held: list[Held] = field(default_factory=list)
    hook: dict[str, Any] | None = None  # the fence-peer hook's last answer
    resumed: str | None = None  # how the last freeze ended
    stale: str | None = None  # why this primary acknowledges nothing (newer epoch)
    closing: str | None = None  # the daemon stops: frozen I/O fails instead of waiting
    on_freeze: Callable[[], None] | None = None  # starts the fence-peer hook

    @property
    def frozen(self) -> bool:
        return self.since is not None


# ---------------------------------------------------------------------- the rule
def guards(engine: Engine) -> bool:
    """Must this side see the peer acknowledge before it acknowledges? Not a second
    primary (dual.py): it writes nothing itself, the first primary does (and is
    guarded); an orphaned one fails every write anyway."""
    return (
        engine.mode == "sync"
        and engine.config.fencing == "resource-only"
        and engine.role == Role.PRIMARY
        and not engine.meta.peer_outdated
        and not engine.dual.second
        and engine.dual.orphaned is None
    )


def check_stale(engine: Engine) -> None:
    if engine.freeze.stale is not None:
        raise StalePrimary(f"{engine.meta.name}: {engine.freeze.stale}; demote this side")


def begin(engine: Engine, reason: str) -> None:
    """Freeze (idempotent): nothing is acknowledged until the peer is outdated."""
    f = engine.freeze
    if f.frozen or not guards(engine):
        return
    f.since = engine.clock.monotonic()
    f.reason = reason
    f.resumed = None
    log.warning(
        "%s: I/O frozen (fencing resource-only): %s; waiting for the peer to be recorded "
        "Outdated (fence-peer hook, `repl outdate-peer --accept-data-loss`) or to return",
        engine.meta.name,
        reason,
    )
    if f.on_freeze is not None:
        f.on_freeze()
    engine.cond.notify_all()


def shipping_or_wait(engine: Engine, shipping: Callable[[], PeerSession | None]) -> bool:
    """A write, zero or flush found no peer to ship to. Returns once it may go on
    unreplicated (True: the peer is outdated or this side is not guarded); raises
    FrozenIO after `freeze_timeout`, StalePrimary if this side turned stale. Returns
    False if a shipping session appeared meanwhile (the caller looks again)."""
    check_stale(engine)
    if not guards(engine):
        return True
    begin(engine, engine.freeze.reason or "no replication peer connected")
    deadline = engine.clock.monotonic() + engine.config.freeze_timeout
    while True:
        check_stale(engine)
        if engine.freeze.closing is not None:
            raise FrozenIO(f"{engine.meta.name}: frozen I/O given up: {engine.freeze.closing}")
        if shipping() is not None:
            return False
        if not guards(engine):
            return True
        left = deadline - engine.clock.monotonic()
        if left <= 0:
            raise FrozenIO(
                f"{engine.meta.name}: I/O frozen for {engine.config.freeze_timeout:g} s "
                f"({engine.freeze.reason}); nothing acknowledged: the peer is not recorded "
                "Outdated"
            )
        engine.cond.wait(min(left, 0.5))


# ---------------------------------------------------------------------- completions
def unreplicated(engine: Engine, done: Done, fail: Fail | None) -> list[tuple[Held, bool]]:
    """A write whose peer acknowledgement will not come (the link died): what to do with
    its completion. Returns the completions to run now (outside the lock)."""
    held = Held(done, fail, engine.clock.monotonic())
    if engine.freeze.stale is not None or engine.freeze.closing is not None:
        return [(held, False)]
    if guards(engine):
        begin(engine, engine.freeze.reason or "replication link lost")
        engine.freeze.held.append(held)
        return []
    return [(held, True)]


def complete(engine: Engine, items: Iterable[tuple[Held, bool]]) -> None:
    """Run completions: (held, True) acknowledges, (held, False) fails with EIO."""
    for held, ok in items:
        try:
            if ok:
                held.done()
            elif held.fail is not None:
                f = engine.freeze
                why = f.stale or f.closing or f.reason or "peer not outdated"
                held.fail(FrozenIO(f"{engine.meta.name}: not acknowledged: {why}"))
        except Exception:  # a client that vanished must not take the engine down
            log.exception("write completion failed")


def complete_later(engine: Engine, items: list[tuple[Held, bool]]) -> None:
    """`complete` on a thread of its own: for callers that hold the engine lock."""
    if items:
        threading.Thread(target=complete, args=(engine, items), daemon=True).start()


def end(engine: Engine, how: str) -> list[tuple[Held, bool]]:
    """The peer is outdated or back: release every held acknowledgement."""
    f = engine.freeze
    items = [(h, f.stale is None and f.closing is None) for h in f.held]
    f.held = []
    if f.frozen:
        log.warning(
            "%s: I/O resumed after %.1f s: %s",
            engine.meta.name,
            engine.clock.monotonic() - (f.since or 0.0),
            how,
        )
        f.resumed = how
    f.since = None
    f.reason = ""
    engine.cond.notify_all()
    return items


def peer_outdated(engine: Engine, how: str) -> list[tuple[Held, bool]]:
    """Record (durably, before anything is acknowledged) that the peer is Outdated."""
    if not engine.meta.peer_outdated:
        engine.save(peer_outdated=True)
    return end(engine, how)


def peer_current(engine: Engine) -> None:
    """The peer is UpToDate again (in sync, connected): it must be guarded again."""
    if engine.meta.peer_outdated:
        engine.save(peer_outdated=False)


def make_stale(engine: Engine, reason: str) -> list[tuple[Held, bool]]:
    """A newer epoch exists: acknowledge nothing from now on; fail what is held."""
    f = engine.freeze
    if engine.role != Role.PRIMARY:
        return []
    if f.stale is None:
        log.error("%s: stale primary, acknowledging nothing: %s", engine.meta.name, reason)
    f.stale = reason
    items = [(h, False) for h in f.held]
    f.held = []
    engine.cond.notify_all()
    return items


def expire(engine: Engine) -> list[tuple[Held, bool]]:
    """Held acknowledgements older than `freeze_timeout` fail (EIO), never succeed."""
    f = engine.freeze
    if not f.held:
        return []
    cutoff = engine.clock.monotonic() - engine.config.freeze_timeout
    old = [h for h in f.held if h.since <= cutoff]
    if not old:
        return []
    f.held = [h for h in f.held if h.since > cutoff]
    log.error(
        "%s: %d held writes failed with EIO after %g s frozen (%s)",
        engine.meta.name,
        len(old),
        engine.config.freeze_timeout,
        f.reason,
    )
    return [(h, False) for h in old]


def status(engine: Engine) -> dict[str, Any]:
    f = engine.freeze
    now = engine.clock.monotonic()
    io = "refused" if f.stale else ("suspended" if f.frozen else "running")
    return {
        "io": io,
        "fencing": engine.config.fencing if engine.mode == "sync" else "dont-care",
        "peer_outdated": engine.meta.peer_outdated,
        "frozen": (
            {
                "reason": f.reason,
                "seconds": round(now - (f.since or now), 1),
                "held_writes": len(f.held),
                "hold_limit_seconds": engine.config.freeze_timeout,
            }
            if f.frozen
            else None
        ),
        "fence_peer": f.hook,
        "resumed": f.resumed,
        "stale": f.stale,
    }
