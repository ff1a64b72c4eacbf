"""Metadata sidecar, dirty bitmap, wire framing and backing-file helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from drorch.replication.base import DiskState
from drorch.replication.pyrepl import wire
from drorch.replication.pyrepl.bitmap import DirtyBitmap
from drorch.replication.pyrepl.meta import (
    NO_GENERATION,
    Generation,
    MetaError,
    fresh_meta,
    load_meta,
    save_meta,
)
from drorch.replication.pyrepl.progress import ResyncProgress
from drorch.replication.pyrepl.storage import Backing

REGION = 64 * 1024


def test_meta_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    meta = fresh_meta("vol", 1 << 20, REGION, primary=True)
    save_meta(path, meta)
    assert load_meta(path) == meta
    assert not (tmp_path / "m.json.tmp").exists()
    assert meta.disk == DiskState.UP_TO_DATE and meta.generation.current != NO_GENERATION
    sec = fresh_meta("vol", 1 << 20, REGION, primary=False)
    assert sec.disk == DiskState.INCONSISTENT and sec.generation.current == NO_GENERATION


@pytest.mark.parametrize("content", ["", "{", "[]", json.dumps({"name": "x"})])
def test_broken_meta_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(MetaError, match=str(path)):
        load_meta(path)


GOOD = {
    "name": "vol",
    "size": 1 << 20,
    "region_size": REGION,
    "node_id": "ab",
    "disk": "UpToDate",
    "generation": {"current": "c0"},
}


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("", "not valid JSON"),
        ("[]", "expected a JSON object, found list"),
        (json.dumps({"name": "x"}), "missing field(s) size, region_size, node_id, disk"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "name"}), "missing field(s) name"),
        (json.dumps({**GOOD, "disk": "Shiny"}), "field 'disk': 'Shiny' is not a valid"),
        (json.dumps({**GOOD, "size": "big"}), "field 'size': expected a non-negative integer"),
        (json.dumps({**GOOD, "epoch": -1}), "field 'epoch': expected a non-negative integer"),
        (json.dumps({**GOOD, "generation": []}), "field 'generation': expected an object"),
        ("\udcff", "not UTF-8 text"),
    ],
)
def test_broken_meta_says_what_is_wrong(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(content, errors="surrogateescape")
    with pytest.raises(MetaError) as info:
        load_meta(path)
    assert str(info.value).startswith(f"{path}: unreadable pyrepl metadata: ")
    assert says in str(info.value)
    assert load_meta_ok(tmp_path)


def load_meta_ok(tmp_path: Path) -> bool:
    path = tmp_path / "good.json"
    path.write_text(json.dumps(GOOD))
    return load_meta(path).generation.current == "c0"


def test_generation_lifecycle() -> None:
    g = Generation("c0")
    d1 = g.diverge()
    assert d1.bitmap == "c0" and d1.current not in ("c0", NO_GENERATION)
    d2 = d1.diverge()
    assert d2.bitmap == "c0", "a second divergence keeps the first base"
    done = d2.resync_finished()
    assert done.bitmap == NO_GENERATION and done.history[0] == "c0"
    target = Generation("c0").adopt(done)
    assert target == Generation(done.current, NO_GENERATION, done.history)


def test_bitmap_persists_set_bits_at_once_and_clears_lazily(tmp_path: Path) -> None:
    path = tmp_path / "bm"
    bm = DirtyBitmap(path, 100 * REGION, REGION)
    assert bm.mark(REGION * 3 + 10, REGION) is True  # regions 3 and 4
    assert bm.mark(REGION * 3, 1) is False
    assert list(bm.set_regions()) == [3, 4] and bm.dirty_bytes == 2 * REGION
    # set bits are on file immediately (a crash of the process keeps them)
    assert list(DirtyBitmap(path, 100 * REGION, REGION).set_regions()) == [3, 4]
    bm.clear(3)
    assert list(DirtyBitmap(path, 100 * REGION, REGION).set_regions()) == [3, 4]
    bm.writeback()
    assert list(DirtyBitmap(path, 100 * REGION, REGION).set_regions()) == [4]
    assert bm.merge(bytes([0b1000_0001])) == 2
    assert list(bm.set_regions()) == [0, 4, 7]
    bm.clear_all()
    assert bm.count == 0 and list(DirtyBitmap(path, 100 * REGION, REGION).set_regions()) == []
    bm.close()


def test_bitmap_region_size_must_be_a_power_of_two(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="power of two"):
        DirtyBitmap(tmp_path / "bm", 1 << 20, 3000)


def test_wire_frames_round_trip_and_bad_input() -> None:
    dec = wire.FrameDecoder()
    stream = (
        wire.json_frame(wire.FrameType.HELLO, {"a": 1})
        + wire.header(wire.FrameType.DATA, seq=1, offset=4096, length=3)
        + b"abc"
        + wire.zero_frame(wire.FrameType.ZERO, seq=2, offset=0, count=8192)
    )
    frames = [f for i in range(len(stream)) for f in dec.feed(stream[i : i + 1])]
    assert [h.type for h, _ in frames] == [
        wire.FrameType.HELLO,
        wire.FrameType.DATA,
        wire.FrameType.ZERO,
    ]
    assert wire.decode_json(*frames[0]) == {"a": 1}
    assert frames[1][0].offset == 4096 and frames[1][1] == b"abc"
    assert wire.zero_count(*frames[2]) == 8192
    with pytest.raises(wire.WireError, match="magic"):
        wire.parse_header(bytes(wire.HEADER.size))
    with pytest.raises(wire.WireError, match="unknown frame type"):
        wire.parse_header(wire.HEADER.pack(wire.MAGIC, 200, 0, 0, 0, 0, 0))
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.parse_header(wire.header(wire.FrameType.DATA, length=wire.MAX_PAYLOAD + 1))
    with pytest.raises(wire.WireError, match="no payload"):
        wire.parse_header(wire.header(wire.FrameType.ACK, length=4))
    with pytest.raises(wire.WireError, match="not JSON"):
        wire.decode_json(wire.parse_header(wire.header(wire.FrameType.ROLE, length=1)), b"{")


def test_backing_zero_hole_and_digest(tmp_path: Path) -> None:
    path = tmp_path / "disk"
    b = Backing(path, 4 * REGION)
    try:
        assert path.stat().st_size == 4 * REGION
        assert b.is_hole(0, REGION)
        b.pwrite(REGION + 5, b"data")
        assert not b.is_hole(REGION, REGION)
        zero_digest = b.digest(0, REGION)
        assert b.digest(2 * REGION, REGION) == zero_digest != b.digest(REGION, REGION)
        b.zero(REGION, REGION)
        assert b.pread(REGION, REGION) == bytes(REGION)
        assert b.digest(REGION, REGION) == zero_digest
    finally:
        b.close()
    with open(path, "r+b") as f:
        f.truncate(REGION)
    b = Backing(path, 4 * REGION)  # extended to the volume size
    b.close()
    assert os.path.getsize(path) == 4 * REGION


def test_progress_eta() -> None:
    p = ResyncProgress(total_bytes=1000, started=10.0)
    assert p.eta_seconds(10.0) is None
    p.done_bytes = 250
    assert p.eta_seconds(12.0) == pytest.approx(6.0)  # 125 B/s, 750 to go
    p.done_bytes = 1000
    assert p.eta_seconds(20.0) == 0.0
    d = p.as_dict(20.0)
    assert d["remaining_bytes"] == 0 and d["done_bytes"] == 1000


def test_zero_without_punching_keeps_the_blocks_allocated(tmp_path: Path) -> None:
    b = Backing(tmp_path / "disk", 4 * REGION)
    try:
        b.pwrite(0, b"\1" * 2 * REGION)
        b.zero(0, REGION, punch=False)  # NBD_CMD_FLAG_NO_HOLE
        b.zero(REGION, REGION)  # may punch
        assert b.pread(0, 2 * REGION) == bytes(2 * REGION)
        assert not b.is_hole(0, REGION)
        assert b.is_hole(REGION, REGION)
    finally:
        b.close()
