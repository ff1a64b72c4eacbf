"""What happens to the local disk outside the write path: recovery after an unclean stop
(the activity log), detach after an I/O error (DRBD's `on-io-error detach`), and the
reattach of a disk that was detached. Each runs with the engine's lock held (or before
any other thread exists)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from drorch.replication.base import DiskState

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine

log = logging.getLogger("drorch.pyrepl")


def recover_activity(engine: Engine) -> int:
    """After an unclean stop of a primary, its activity log still lists the extents
    it may have been writing: whatever it wrote there may be missing on the peer.
    Mark them dirty (durably) so the next resync carries them; then start empty.
    Returns how many extents were recovered."""
    extents = sorted(engine.activity.recovered)
    if not extents:
        return 0
    size = engine.config.size
    for extent in extents:
        start, length = engine.activity.extent_range(extent, size)
        engine.bitmap.mark(start, length)
    engine.bitmap.sync()
    engine.activity.clear()
    log.warning(
        "%s: unclean stop while writing: %d activity-log extents (%d bytes) marked "
        "out of sync for the next resync",
        engine.meta.name,
        len(extents),
        sum(engine.activity.extent_range(e, size)[1] for e in extents),
    )
    return len(extents)


def detached(engine: Engine, reason: str) -> None:
    """The backing failed an I/O (storage.py): go Diskless. This side's copy is no
    longer trusted or served; the link drops and stays down (a peer would otherwise
    resync into, or from, a failed disk)."""
    with engine.cond:
        log.error("%s: local disk detached: %s", engine.meta.name, reason)
        engine.last_error = (
            f"local disk detached after an I/O error ({reason}); the peer holds the "
            "data: fail over to it, then repair the disk and restart this side"
        )
        engine.want_connect = False
        if engine.session is not None:
            engine.session.close("local disk detached")
        try:
            engine.save(disk=DiskState.DISKLESS)
        except OSError as exc:  # the metadata may live on the failed disk too
            engine.meta = replace(engine.meta, disk=DiskState.DISKLESS)
            log.error("%s: could not record Diskless: %s", engine.meta.name, exc)
        engine.cond.notify_all()


def reattach(engine: Engine) -> None:
    """Started on a disk that was detached: whatever it holds is suspect. It attaches
    Inconsistent with every region out of sync, so the next connect resyncs all."""
    engine.bitmap.mark(0, engine.config.size)
    engine.bitmap.sync()
    engine.save(disk=DiskState.INCONSISTENT)
    log.warning(
        "%s: attaching a disk that was detached after an I/O error: Inconsistent, "
        "a full resync from the peer follows",
        engine.meta.name,
    )
