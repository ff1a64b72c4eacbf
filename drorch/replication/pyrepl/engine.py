"""The replication engine of one volume on one node: role, disk state, the write path.

One condition variable (`cond`) guards all state. The NBD server calls read/write/
flush/zero; the control server calls the role operations; the link (session.py) feeds
peer frames in. Writes are applied locally and queued to the peer under the lock, so
the local order and the shipping order are the same order: the secondary, applying
frames in sequence, always holds a prefix of the primary's history.

What it is started with, `EngineConfig`, is in engine_config.py.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from drorch.clock import Clock
from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationError,
    Role,
    UnsafeOperation,
)
from drorch.replication.pyrepl import (
    disk_events,
    dual,
    forwarding,
    freeze,
    mode_drain,
    modeswitch,
    resync,
    writes,
)
from drorch.replication.pyrepl.activity import ActivityLog
from drorch.replication.pyrepl.bitmap import DirtyBitmap
from drorch.replication.pyrepl.engine_config import EngineConfig
from drorch.replication.pyrepl.errors import NotReadable as NotReadable
from drorch.replication.pyrepl.errors import ReadOnly as ReadOnly
from drorch.replication.pyrepl.fence_hook import FenceHook
from drorch.replication.pyrepl.handshake import Action, SideView, SyncDecision, decide_sync
from drorch.replication.pyrepl.meta import fresh_meta, load_meta, save_meta
from drorch.replication.pyrepl.owner import OwnerLock
from drorch.replication.pyrepl.pipes import Payload
from drorch.replication.pyrepl.progress import ResyncProgress
from drorch.replication.pyrepl.session import PeerSession
from drorch.replication.pyrepl.shipping import ShippingState
from drorch.replication.pyrepl.storage import Backing
from drorch.replication.pyrepl.unshipped import Ledger
from drorch.replication.pyrepl.verify import Verifier
from drorch.replication.pyrepl.wire import FrameType

if TYPE_CHECKING:
    from drorch.replication.pyrepl.tls_stream import Stream

log = logging.getLogger("drorch.pyrepl")

MODES = modeswitch.MODES
SYNC_LATENCY_SAMPLES = 1024
CONGESTION = ("block", "pull-ahead")


def _no_op() -> None:
    pass


class Engine:
    def __init__(self, config: EngineConfig, clock: Clock) -> None:
        if config.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {config.mode!r}")
        if config.on_congestion not in CONGESTION:
            raise ValueError(f"on_congestion must be one of {CONGESTION}")
        if config.fencing not in freeze.POLICIES:
            raise ValueError(f"fencing must be one of {freeze.POLICIES}")
        self.config = config
        self.clock = clock
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.mode = config.mode
        if not config.meta_file.parent.is_dir():
            raise ReplicationError(f"{config.meta_file.parent}: no such directory")
        self.owner = OwnerLock(config.meta_file)  # before anything reads or writes the replica
        try:
            self._open(config)
        except BaseException:
            self.owner.release()
            raise

    def _open(self, config: EngineConfig) -> None:
        meta_file = config.meta_file
        if meta_file.exists():
            if not config.backing.exists():
                raise ReplicationError(
                    f"{config.backing} is missing but {meta_file} describes it "
                    f"(disk {load_meta(meta_file).disk.value}): refusing to start on an "
                    "empty disk; restore it, or remove the metadata to start over"
                )
            meta = load_meta(meta_file)
            if (meta.name, meta.region_size) != (config.name, config.region_size):
                raise ReplicationError(
                    f"{meta_file}: metadata is for volume {meta.name!r} with "
                    f"{meta.region_size}-byte regions, not {config.name!r}"
                )
            if meta.size != config.size:
                raise ReplicationError(
                    f"{meta_file}: volume size {meta.size} differs from --size {config.size}"
                )
        else:
            meta = fresh_meta(
                config.name, config.size, config.region_size, primary=config.role == Role.PRIMARY
            )
            save_meta(meta_file, meta)
        if config.role == Role.PRIMARY and meta.disk != DiskState.UP_TO_DATE:
            raise UnsafeOperation(
                f"refusing to start as primary: local disk is {meta.disk.value}; start as "
                "secondary and let it resync, or promote with --force --accept-data-loss"
            )
        self.meta = meta
        self.start_config = config  # as given; a live mode switch changes self.config
        self.config = config = modeswitch.at_start(self, config)
        self.mode = config.mode
        self.switch: mode_drain.Switch | None = None  # an async -> sync switch draining
        self.last_switch: dict[str, Any] | None = None
        self.backing = Backing(
            config.backing, config.size, on_failure=lambda why: disk_events.detached(self, why)
        )
        self.bitmap = DirtyBitmap(config.bitmap_file, config.size, config.region_size)
        self.activity = ActivityLog(
            config.activity_file, config.size, config.region_size, config.al_extents
        )
        self.recovered_extents = disk_events.recover_activity(self)
        if meta.disk == DiskState.DISKLESS:
            disk_events.reattach(self)
        self.role = config.role
        self.session: PeerSession | None = None
        self.want_connect = True
        self.dial_attempts = 0  # finished attempts, for callers waiting on an outcome
        self.last_error: str | None = None
        self.split_brain: dict[str, Any] | None = None
        self.nbd_uri: str | None = None
        # connected-state bookkeeping (see session.py)
        self.ship = ShippingState()  # activity bits, frames in flight, resync work list
        self.ledger = Ledger(config.ledger_file)  # writes the peer does not have (unshipped.py)
        self.progress: ResyncProgress | None = None
        self.stats = {"bytes_sent": 0, "resync_bytes_sent": 0, "frames_received": 0, "writes": 0}
        self.verifier = Verifier(self)
        self.freeze = freeze.FreezeState()
        self.fence_hook: FenceHook | None = None
        self.replace_fence_hook()
        self.dual = dual.DualState()  # two primaries (dual.py)
        # seconds from a sync write entering the engine until durable on both sides
        self.sync_latency: deque[float] = deque(maxlen=SYNC_LATENCY_SAMPLES)
        modeswitch.resume(self)

    def replace_fence_hook(self) -> None:
        """(Re)build the fence-peer hook from the config (at start, after set-mode)."""
        if self.fence_hook is not None:
            self.fence_hook.close()
        self.fence_hook, self.freeze.on_freeze = None, None
        if self.config.fence_peer_cmd:
            hook = FenceHook(self, self.config.fence_peer_cmd, self.config.unfence_peer_cmd)
            self.fence_hook, self.freeze.on_freeze = hook, hook.kick

    # ----------------------------------------------------------------- metadata
    def save(self, **changes: Any) -> None:
        """Persist a metadata change atomically (caller holds cond). Becoming Outdated,
        or recording the peer Outdated, also records since when (wall clock)."""
        if "disk" in changes and (changes["disk"] == DiskState.OUTDATED) != (
            self.meta.disk == DiskState.OUTDATED
        ):
            changes["outdated_since"] = (
                self.clock.now() if changes["disk"] == DiskState.OUTDATED else None
            )
        if "peer_outdated" in changes and changes["peer_outdated"] != self.meta.peer_outdated:
            changes["peer_outdated_since"] = self.clock.now() if changes["peer_outdated"] else None
        self.meta = replace(self.meta, **changes)
        save_meta(self.config.meta_file, self.meta)

    def view(self) -> SideView:
        m = self.meta
        return SideView(
            name=m.name,
            node_id=m.node_id,
            size=m.size,
            region_size=m.region_size,
            role=self.role,
            disk=m.disk,
            generation=m.generation,
            epoch=m.epoch,
            discard_local=m.discard_local,
            dirty_regions=self.bitmap.count - self.ship.activity_regions,
            mode=self.meta.mode or self.mode,
            mode_serial=self.meta.mode_serial,
        )

    # ---------------------------------------------------------------- data path
    def writable(self) -> bool:
        return self.role == Role.PRIMARY

    def allocation(self, offset: int, length: int, max_extents: int) -> list[tuple[int, bool]]:
        """(length, is_hole) extents for NBD block status; refused like a read."""
        if self.meta.disk == DiskState.INCONSISTENT:
            raise NotReadable(f"{self.meta.name}: local disk is Inconsistent")
        return self.backing.allocation(offset, length, max_extents)

    def read(self, offset: int, length: int) -> bytes:
        if self.meta.disk == DiskState.INCONSISTENT:
            raise NotReadable(f"{self.meta.name}: local disk is Inconsistent")
        return self.backing.pread(offset, length)

    def write(self, offset: int, data: Payload, *, fua: bool) -> None:
        """Write and return once the write is as durable as the mode promises; raise
        (FrozenIO, StalePrimary) when it is never acknowledged."""
        done = threading.Event()
        failed: list[Exception] = []

        def fail(exc: Exception) -> None:
            failed.append(exc)
            done.set()

        self.write_then(offset, data, fua=fua, done=done.set, fail=fail)
        done.wait()
        if failed:
            raise failed[0]

    def write_then(
        self,
        offset: int,
        data: Payload,
        *,
        fua: bool,
        done: Callable[[], None],
        fail: Callable[[Exception], None] | None = None,
    ) -> None:
        """See writes.write_then: `done()` runs once the write may be acknowledged;
        `fail(exc)` if, after the call returned, it never will be (a freeze ran out)."""
        if forwarding.active(self):  # a second primary: the first one writes it
            forwarding.forward(
                self, FrameType.FWD_DATA, offset, data, len(data), fua=fua, done=done, fail=fail
            )
            return
        writes.write_then(self, offset, data, fua=fua, done=done, fail=fail)

    def zero(self, offset: int, length: int, *, fua: bool, punch: bool = True) -> None:
        if forwarding.active(self):
            z = FrameType.FWD_ZERO
            forwarding.forward(
                self, z, offset, None, length, fua=fua, punch=punch, done=_no_op, fail=None
            )
            return
        writes.zero(self, offset, length, fua=fua, punch=punch)

    def flush(self) -> None:
        if forwarding.active(self):
            forwarding.flush(self)
            return
        writes.flush(self)

    def flush_local(self) -> None:
        writes.flush_local(self)

    # ---------------------------------------------------------------- link
    def attach(self, sock: Stream, peer: SideView, peer_bitmap: bytes) -> SyncDecision:
        """Both handshakes done: decide and act (caller holds the lock)."""
        decision = decide_sync(self.view(), peer)
        log.info("%s: connect: %s (%s)", self.meta.name, decision.action.value, decision.reason)
        resolving = self.meta.discard_local or peer.discard_local
        if self.role == Role.PRIMARY and peer.epoch > self.meta.epoch and not resolving:
            why = f"the peer has seen fencing epoch {peer.epoch}, newer than {self.meta.epoch}"
            freeze.complete_later(self, freeze.make_stale(self, why))
        if not decision.connects:
            self.want_connect = False
            self.last_error = f"{decision.action.value}: {decision.reason}"
            if decision.action == Action.SPLIT_BRAIN:
                self.split_brain = {
                    "reason": decision.reason,
                    "local": self.meta.generation.as_dict(),
                    "peer": peer.generation.as_dict(),
                }
            sock.close()
            self.cond.notify_all()
            return decision
        modeswitch.at_connect(self, peer)
        session = PeerSession(self, sock, peer, ConnState.CONNECTED)
        self.session = session
        dual.attached(self, session)
        if peer.epoch > self.meta.epoch:  # learn the newest fencing epoch either side saw
            self.save(epoch=peer.epoch)
        self.last_error = None
        self.split_brain = None
        if decision.action == Action.SOURCE:
            self.bitmap.merge(peer_bitmap)
            resync.queue_regions(self, full=decision.full)
            self.start_resync(session, decision.reason)
        elif decision.action == Action.TARGET:
            # the disk turns Inconsistent when the source's RS_BEGIN arrives, not here: a
            # peer that dies right after the handshake leaves this copy as it was
            session.state = ConnState.SYNC_TARGET
            self.progress = None
        elif peer.disk == DiskState.UP_TO_DATE and self.meta.disk == DiskState.UP_TO_DATE:
            recorded = self.meta.peer_outdated
            freeze.peer_current(self)  # in sync: both hold the same data again
            if recorded and self.fence_hook is not None and self.role == Role.PRIMARY:
                self.fence_hook.unfence()  # the witness's record is wrong now: clear it
            freeze.complete_later(self, freeze.end(self, "the peer is back and in sync"))
        session.start()
        mode_drain.poll(self)
        self.cond.notify_all()
        return decision

    def start_resync(self, session: PeerSession, reason: str) -> None:
        resync.start(self, session, reason)

    def session_lost(self, session: PeerSession, reason: str) -> None:
        """The link died (caller holds the lock): whatever was in flight is dirty."""
        if self.session is not session:
            return
        self.session = None
        in_flight, settled = self.ship.lost()
        self._count_lost_frames(session)
        for region in in_flight:
            self.bitmap.set_region(region)
        for region in settled:
            self.bitmap.clear(region)
        self.bitmap.writeback()
        if self.want_connect:
            self.last_error = reason
        forwarding.link_lost(self, reason)
        mode_drain.link_lost(self)
        freeze.begin(self, f"replication link lost: {reason}")
        self.cond.notify_all()

    def _count_lost_frames(self, session: PeerSession) -> None:
        """Data frames the peer never acknowledged: the ledger counts them (durably now:
        the writes may already be acknowledged to the client, async)."""
        frames = [f for f in session.inflight if f.writes and not f.resync_bytes]
        if frames and self.role == Role.PRIMARY:
            now, mono = self.clock.now(), self.clock.monotonic()
            first = now - (mono - frames[0].queued_at)
            nbytes = sum(f.lag_bytes for f in frames)
            self.ledger.note_lost_frames(len(frames), nbytes, first, now)
        self.ledger.link_settled()  # counted: nothing of this link is in flight any more
        try:
            self.ledger.persist()
        except OSError as exc:  # bookkeeping: never turn a link loss into a crash
            log.warning("%s: cannot persist the unshipped ledger: %s", self.meta.name, exc)

    # ---------------------------------------------------------------- status
    def connection(self) -> ConnState:
        if self.session is not None and self.session.alive:
            return self.session.state
        return ConnState.CONNECTING if self.want_connect else ConnState.STANDALONE

    def housekeeping(self) -> None:
        """Clear activity-log bits whose writes the peer acknowledged; write back; fail
        acknowledgements held longer than the freeze bound."""
        forwarding.housekeeping(self)
        with self.cond:
            expired = freeze.expire(self)
        freeze.complete(self, expired)
        with self.cond:
            s = self.session
            if s is not None and s.alive and not s.ahead:
                for r in self.ship.settled():
                    self.bitmap.clear(r)
            self.bitmap.writeback()
            mode_drain.poll(self)

    def stop_io(self, reason: str) -> None:
        """No more acknowledgements: held ones fail, waiting writers get EIO."""
        with self.cond:
            self.freeze.closing = reason
            failed = freeze.end(self, reason)
        freeze.complete(self, failed)

    def close(self) -> None:
        if self.fence_hook is not None:
            self.fence_hook.close()
        with self.cond:
            if self.session is not None:
                self.session.close("shutting down")
            try:  # the writes counted in memory are on disk after the sync below
                self.ledger.persist()
            except OSError as exc:
                log.warning("%s: cannot persist the unshipped ledger: %s", self.meta.name, exc)
            self.bitmap.writeback()
            self.bitmap.sync()
            if self.backing.detached is None:
                self.backing.sync()
            self.activity.clear()  # clean stop: everything written here is durable
            self.activity.close()
            self.ledger.close()
            self.bitmap.close()
            self.backing.close()
            self.owner.release()
