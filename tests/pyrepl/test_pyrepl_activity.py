"""The activity log (activity.py): durable before data, LRU with a durable bitmap on
eviction, and recovery after kill -9 of a writing primary. Real files, real processes."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from drorch.clock import SystemClock
from drorch.replication.base import Role
from drorch.replication.pyrepl import activity
from drorch.replication.pyrepl.activity import EXTENT_SIZE, ActivityLog
from drorch.replication.pyrepl.engine import Engine
from drorch.replication.pyrepl.engine_config import EngineConfig
from tests.pyrepl.conftest import ServeProcess
from tests.pyrepl.nbd_client import NbdClient

MIB = 1024 * 1024
VOLUME = 32 * MIB  # 8 extents


def listed(path: Path) -> set[int]:
    """The extents the log file lists right now (read back from the file)."""
    raw = path.read_bytes()
    _, _, _, slots = activity.HEADER.unpack_from(raw)
    table = struct.unpack_from(f">{slots}I", raw, activity.HEADER.size)
    return {e for e in table if e != activity.EMPTY}


def test_an_extent_is_durably_listed_before_cover_returns(tmp_path: Path) -> None:
    path = tmp_path / "al"
    synced: list[set[int]] = []
    log = ActivityLog(path, VOLUME, 64 * 1024, slots=8, sync=lambda fd: synced.append(listed(path)))
    assert log.recovered == frozenset()
    assert log.cover(5 * EXTENT_SIZE + 100, 4096, before_evict=lambda: None)
    assert synced == [{5}]
    assert not log.cover(5 * EXTENT_SIZE, 4096, before_evict=lambda: None)  # hot: no I/O
    assert log.cover(EXTENT_SIZE - 512, 1024, before_evict=lambda: None)  # spans 0 and 1
    assert synced[-1] == {0, 1, 5}
    log.close()
    assert ActivityLog(path, VOLUME, 64 * 1024).recovered == {0, 1, 5}  # as after a crash


def test_least_recently_written_extent_is_evicted_after_the_bitmap_is_durable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "al"
    events: list[str] = []
    log = ActivityLog(path, VOLUME, 64 * 1024, slots=2, sync=lambda fd: events.append("al"))

    def bitmap_sync() -> None:
        events.append("bitmap")

    log.cover(0, 4096, bitmap_sync)
    log.cover(EXTENT_SIZE, 4096, bitmap_sync)
    log.cover(0, 4096, bitmap_sync)  # extent 0 is now the most recent
    log.cover(2 * EXTENT_SIZE, 4096, bitmap_sync)  # evicts extent 1
    assert events == ["al", "al", "bitmap", "al"]
    assert listed(path) == {0, 2}
    with pytest.raises(ValueError, match="spans 3 extents"):
        log.cover(3 * EXTENT_SIZE, 2 * EXTENT_SIZE + 1, bitmap_sync)


def test_clean_clear_and_unreadable_logs(tmp_path: Path) -> None:
    path = tmp_path / "al"
    log = ActivityLog(path, VOLUME, 64 * 1024)
    log.cover(0, 4096, lambda: None)
    log.clear()
    log.close()
    assert ActivityLog(path, VOLUME, 64 * 1024).recovered == frozenset()
    everything = frozenset(range(VOLUME // EXTENT_SIZE))
    path.write_bytes(b"garbage that is not an activity log")
    assert ActivityLog(path, VOLUME, 64 * 1024).recovered == everything
    path.write_bytes(b"PYAL")  # torn header
    assert ActivityLog(path, VOLUME, 64 * 1024).recovered == everything
    big = ActivityLog(tmp_path / "big", VOLUME, 8 * MIB)
    assert big.extent_size == 8 * MIB  # never smaller than a bitmap region


def _engine(tmp_path: Path, **changes: object) -> Engine:
    config = EngineConfig(
        name="vol",
        backing=tmp_path / "vol.img",
        size=VOLUME,
        mode="sync",
        role=Role.PRIMARY,
        **changes,  # type: ignore[arg-type]
    )
    return Engine(config, SystemClock())


def test_no_data_write_reaches_an_extent_the_durable_log_does_not_list(tmp_path: Path) -> None:
    """The power-cut property, checked at every data write: its extents are listed by
    the log as it was last made durable, or (evicted) the bitmap was made durable."""
    engine = _engine(tmp_path, al_extents=3)
    durable: set[int] = set()
    bitmap_synced_after_evict: list[bool] = []
    al_path = engine.config.activity_file

    def al_sync(fd: int) -> None:
        os.fdatasync(fd)
        before = set(durable)
        durable.clear()
        durable.update(listed(al_path))
        if before - durable:  # something was evicted: the bitmap went durable first
            bitmap_synced_after_evict.append(not engine.bitmap._unsynced)

    engine.activity._sync = al_sync
    real_pwrite = engine.backing.pwrite

    def checked_pwrite(offset: int, data: object) -> None:
        assert isinstance(data, bytes)
        needed = set(engine.activity.span(offset, len(data)))
        assert needed <= durable, f"data write into {needed - durable} before the log"
        real_pwrite(offset, data)

    engine.backing.pwrite = checked_pwrite  # type: ignore[method-assign]
    try:
        for i, offset in enumerate([0, 9 * MIB, 17 * MIB, 25 * MIB, 1 * MIB, 30 * MIB]):
            engine.write(offset, bytes([i]) * 65536, fua=False)
        assert bitmap_synced_after_evict and all(bitmap_synced_after_evict)
        assert engine.activity.transactions >= 6
    finally:
        engine.backing.pwrite = real_pwrite  # type: ignore[method-assign]
        engine.close()
    assert listed(al_path) == set()  # clean stop: nothing to resync on the next start


def reopen(backing: Path) -> Engine:
    """The engine a restarted primary would run on these files."""
    config = EngineConfig(name="vol", backing=backing, size=VOLUME, mode="async", role=Role.PRIMARY)
    return Engine(config, SystemClock())


def test_kill9_of_a_writing_primary_marks_its_hot_extents_out_of_sync(
    tmp_path: Path, processes: Callable[..., ServeProcess]
) -> None:
    primary = processes("a", "primary", mode="async", size="32MiB")
    with NbdClient(*primary.nbd, "vol") as nbd:
        nbd.write(1 * MIB, b"x" * 4096)  # extent 0
        nbd.write(13 * MIB, b"y" * 8192)  # extent 3
    # the data is in the file; no peer ever saw it (standalone), and bits are set lazily
    primary.kill9()
    engine = reopen(primary.backing)
    try:
        assert engine.recovered_extents == 2
        dirty = set(engine.bitmap.set_regions())
        region = engine.config.region_size
        for extent in (0, 3):
            first = extent * EXTENT_SIZE // region
            assert set(range(first, first + EXTENT_SIZE // region)) <= dirty
        assert engine.bitmap.dirty_bytes == 2 * EXTENT_SIZE
    finally:
        engine.close()
    again = reopen(primary.backing)
    try:
        assert again.recovered_extents == 0  # the clean stop emptied the log
        assert again.bitmap.dirty_bytes == 2 * EXTENT_SIZE  # the bits wait for a resync
    finally:
        again.close()


def test_a_clean_sigterm_leaves_nothing_to_resync(
    tmp_path: Path, processes: Callable[..., ServeProcess]
) -> None:
    primary = processes("a", "primary", mode="async", size="32MiB")
    with NbdClient(*primary.nbd, "vol") as nbd:
        nbd.write(1 * MIB, b"x" * 4096)
    assert primary.terminate() == 0
    engine = reopen(primary.backing)
    try:
        assert engine.recovered_extents == 0
    finally:
        engine.close()
