"""The replication engine of one volume on one node: role, disk state, the write path.

One condition variable (`cond`) guards all state. The NBD server calls read/write/
flush/zero; the control server calls the role operations; the link (session.py) feeds
peer frames in. Writes are applied locally and queued to the peer under the lock, so
the local order and the shipping order are the same order: the secondary, applying
frames in sequence, always holds a prefix of the primary's history.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drorch.clock import Clock
from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationError,
    Role,
    UnsafeOperation,
)
from drorch.replication.pyrepl import resync, writes
from drorch.replication.pyrepl.activity import DEFAULT_SLOTS, ActivityLog
from drorch.replication.pyrepl.bitmap import DirtyBitmap
from drorch.replication.pyrepl.handshake import Action, SideView, SyncDecision, decide_sync
from drorch.replication.pyrepl.meta import fresh_meta, load_meta, save_meta
from drorch.replication.pyrepl.owner import OwnerLock
from drorch.replication.pyrepl.pipes import Payload
from drorch.replication.pyrepl.progress import ResyncProgress
from drorch.replication.pyrepl.session import PeerSession
from drorch.replication.pyrepl.storage import Backing
from drorch.replication.pyrepl.verify import Verifier

if TYPE_CHECKING:
    from drorch.replication.pyrepl.tls_stream import Stream

log = logging.getLogger("drorch.pyrepl")

MODES = ("sync", "async")
SYNC_LATENCY_SAMPLES = 1024
CONGESTION = ("block", "pull-ahead")


class ReadOnly(ReplicationError):
    """A write reached a side that is not primary (answered with NBD EPERM)."""


class NotReadable(ReplicationError):
    """A read reached a disk whose contents are not consistent (answered with EIO)."""


@dataclass(frozen=True)
class EngineConfig:
    name: str
    backing: Path
    size: int
    mode: str = "sync"
    role: Role = Role.SECONDARY
    meta_path: Path | None = None
    region_size: int = 64 * 1024
    max_lag_bytes: int = 64 * 1024 * 1024
    on_congestion: str = "block"
    resync_rate: int = 0  # bytes per second a resync may use; 0 = as fast as possible
    al_extents: int = DEFAULT_SLOTS  # activity log slots (DRBD's al-extents)

    @property
    def meta_file(self) -> Path:
        return self.meta_path or self.backing.with_name(self.backing.name + ".pyrepl-meta")

    @property
    def bitmap_file(self) -> Path:
        return self.meta_file.with_name(self.meta_file.name + ".bitmap")

    @property
    def activity_file(self) -> Path:
        return self.meta_file.with_name(self.meta_file.name + ".al")


class Engine:
    def __init__(self, config: EngineConfig, clock: Clock) -> None:
        if config.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {config.mode!r}")
        if config.on_congestion not in CONGESTION:
            raise ValueError(f"on_congestion must be one of {CONGESTION}")
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
        self.backing = Backing(config.backing, config.size, on_failure=self._detached)
        self.bitmap = DirtyBitmap(config.bitmap_file, config.size, config.region_size)
        self.activity = ActivityLog(
            config.activity_file, config.size, config.region_size, config.al_extents
        )
        self.recovered_extents = self._recover_activity()
        if meta.disk == DiskState.DISKLESS:
            self._reattach()
        self.role = config.role
        self.session: PeerSession | None = None
        self.want_connect = True
        self.dial_attempts = 0  # finished attempts, for callers waiting on an outcome
        self.last_error: str | None = None
        self.split_brain: dict[str, Any] | None = None
        self.nbd_uri: str | None = None
        # connected-state bookkeeping (see session.py)
        self.inflight: dict[int, int] = {}  # region -> frames in flight touching it
        self.hot: set[int] = set()  # bits set only as activity log while shipping
        self.todo: deque[int] = deque()  # regions still to resync
        self.todo_set: set[int] = set()
        self.progress: ResyncProgress | None = None
        self.stats = {"bytes_sent": 0, "resync_bytes_sent": 0, "frames_received": 0, "writes": 0}
        self.verifier = Verifier(self)
        # seconds from a sync write entering the engine until durable on both sides
        self.sync_latency: deque[float] = deque(maxlen=SYNC_LATENCY_SAMPLES)

    def _recover_activity(self) -> int:
        """After an unclean stop of a primary, its activity log still lists the extents
        it may have been writing: whatever it wrote there may be missing on the peer.
        Mark them dirty (durably) so the next resync carries them; then start empty."""
        extents = sorted(self.activity.recovered)
        if not extents:
            return 0
        for extent in extents:
            start, length = self.activity.extent_range(extent, self.config.size)
            self.bitmap.mark(start, length)
        self.bitmap.sync()
        self.activity.clear()
        log.warning(
            "%s: unclean stop while writing: %d activity-log extents (%d bytes) marked "
            "out of sync for the next resync",
            self.meta.name,
            len(extents),
            sum(self.activity.extent_range(e, self.config.size)[1] for e in extents),
        )
        return len(extents)

    def _detached(self, reason: str) -> None:
        """The backing failed an I/O (storage.py): go Diskless, as DRBD's `on-io-error
        detach`. This side's copy is no longer trusted or served; the link drops and
        stays down (a peer would otherwise resync into, or from, a failed disk)."""
        with self.cond:
            log.error("%s: local disk detached: %s", self.meta.name, reason)
            self.last_error = (
                f"local disk detached after an I/O error ({reason}); the peer holds the "
                "data: fail over to it, then repair the disk and restart this side"
            )
            self.want_connect = False
            if self.session is not None:
                self.session.close("local disk detached")
            try:
                self.save(disk=DiskState.DISKLESS)
            except OSError as exc:  # the metadata may live on the failed disk too
                self.meta = replace(self.meta, disk=DiskState.DISKLESS)
                log.error("%s: could not record Diskless: %s", self.meta.name, exc)
            self.cond.notify_all()

    def _reattach(self) -> None:
        """Started on a disk that was detached: whatever it holds is suspect. It attaches
        Inconsistent with every region out of sync, so the next connect resyncs all."""
        self.bitmap.mark(0, self.config.size)
        self.bitmap.sync()
        self.save(disk=DiskState.INCONSISTENT)
        log.warning(
            "%s: attaching a disk that was detached after an I/O error: Inconsistent, "
            "a full resync from the peer follows",
            self.meta.name,
        )

    # ----------------------------------------------------------------- metadata
    def save(self, **changes: Any) -> None:
        """Persist a metadata change atomically (caller holds cond)."""
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
            dirty_regions=self.bitmap.count - len(self.hot),
            mode=self.mode,
        )

    # ---------------------------------------------------------------- data path
    def writable(self) -> bool:
        return self.role == Role.PRIMARY

    def read(self, offset: int, length: int) -> bytes:
        if self.meta.disk == DiskState.INCONSISTENT:
            raise NotReadable(f"{self.meta.name}: local disk is Inconsistent")
        return self.backing.pread(offset, length)

    def write(self, offset: int, data: Payload, *, fua: bool) -> None:
        """Write and return once the write is as durable as the mode promises."""
        done = threading.Event()
        self.write_then(offset, data, fua=fua, done=done.set)
        done.wait()

    def write_then(
        self, offset: int, data: Payload, *, fua: bool, done: Callable[[], None]
    ) -> None:
        """See writes.write_then: `done()` runs once the write may be acknowledged."""
        writes.write_then(self, offset, data, fua=fua, done=done)

    def zero(self, offset: int, length: int, *, fua: bool, punch: bool = True) -> None:
        writes.zero(self, offset, length, fua=fua, punch=punch)

    def flush(self) -> None:
        writes.flush(self)

    def flush_local(self) -> None:
        writes.flush_local(self)

    # ---------------------------------------------------------------- link
    def attach(self, sock: Stream, peer: SideView, peer_bitmap: bytes) -> SyncDecision:
        """Both handshakes done: decide and act (caller holds the lock)."""
        decision = decide_sync(self.view(), peer)
        log.info("%s: connect: %s (%s)", self.meta.name, decision.action.value, decision.reason)
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
        session = PeerSession(self, sock, peer, ConnState.CONNECTED)
        self.session = session
        if peer.epoch > self.meta.epoch:  # learn the newest fencing epoch either side saw
            self.save(epoch=peer.epoch)
        self.last_error = None
        self.split_brain = None
        if decision.action == Action.SOURCE:
            self.bitmap.merge(peer_bitmap)
            resync.queue_regions(self, full=decision.full)
            self.start_resync(session, decision.reason)
        elif decision.action == Action.TARGET:
            self.save(disk=DiskState.INCONSISTENT)
            session.state = ConnState.SYNC_TARGET
            self.progress = None
        session.start()
        self.cond.notify_all()
        return decision

    def start_resync(self, session: PeerSession, reason: str) -> None:
        resync.start(self, session, reason)

    def session_lost(self, session: PeerSession, reason: str) -> None:
        """The link died (caller holds the lock): whatever was in flight is dirty."""
        if self.session is not session:
            return
        self.session = None
        for region in self.inflight:
            self.bitmap.set_region(region)
        for region in self.hot:
            if not self.inflight.get(region):
                self.bitmap.clear(region)
        self.hot.clear()
        self.inflight.clear()
        self.todo.clear()
        self.todo_set.clear()
        self.bitmap.writeback()
        if self.want_connect:
            self.last_error = reason
        self.cond.notify_all()

    # ---------------------------------------------------------------- status
    def connection(self) -> ConnState:
        if self.session is not None and self.session.alive:
            return self.session.state
        return ConnState.CONNECTING if self.want_connect else ConnState.STANDALONE

    def housekeeping(self) -> None:
        """Clear activity-log bits whose writes the peer acknowledged; write back."""
        with self.cond:
            s = self.session
            if s is not None and s.alive and not s.ahead:
                for r in [r for r in self.hot if not self.inflight.get(r)]:
                    self.hot.discard(r)
                    self.bitmap.clear(r)
            self.bitmap.writeback()

    def close(self) -> None:
        with self.cond:
            if self.session is not None:
                self.session.close("shutting down")
            self.bitmap.writeback()
            self.bitmap.sync()
            if self.backing.detached is None:
                self.backing.sync()
            self.activity.clear()  # clean stop: everything written here is durable
            self.activity.close()
            self.bitmap.close()
            self.backing.close()
            self.owner.release()
