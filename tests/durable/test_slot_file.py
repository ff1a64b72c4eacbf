"""The two-slot record file (drorch/slot_file.py) and the unshipped ledger written through it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from drorch import slot_file
from drorch.replication.pyrepl.unshipped import TEXT_LIMIT, Ledger, read_file
from drorch.slot_file import SLOT, SlotFile, SlotFileError, decode


def _record(path: Path) -> tuple[int, bytes]:
    return decode(path.read_bytes())


def test_updates_are_in_place_and_alternate_slots(tmp_path: Path) -> None:
    path = tmp_path / "rec"
    f = SlotFile(path)
    f.write(b"one")
    inode = path.stat().st_ino
    f.write(b"two")
    f.write(b"three")
    assert _record(path) == (3, b"three")
    assert path.stat().st_ino == inode and path.stat().st_size == 2 * SLOT  # never replaced
    raw = path.read_bytes()
    assert b"two" in raw[:SLOT] and b"three" in raw[SLOT:]  # serial 2 in slot 0, 3 in slot 1
    f.close()
    again = SlotFile(path, serial=3)
    again.write(b"four")  # slot 0: the newest record (slot 1) is never the one written
    assert _record(path) == (4, b"four") and b"three" in path.read_bytes()[SLOT:]
    again.close()


@pytest.mark.parametrize("torn_at", range(0, SLOT + 1, 512))
def test_a_torn_update_reads_as_the_record_before_it(tmp_path: Path, torn_at: int) -> None:
    """A crash may leave any prefix of the new slot on disk: the read is old or new."""
    path = tmp_path / "rec"
    f = SlotFile(path)
    f.write(b"old record")
    f.close()
    new = slot_file._slot(2, b"new record, longer than the old one")
    raw = bytearray(path.read_bytes())
    raw[0:torn_at] = new[:torn_at]  # serial 2 goes to slot 0; slot 1 holds serial 1
    path.write_bytes(bytes(raw))
    serial, body = _record(path)
    full = torn_at >= slot_file.HEADER.size + len(b"new record, longer than the old one")
    assert (serial, body) == ((2, new[24:59]) if full else (1, b"old record"))


def test_a_flipped_bit_is_caught_by_the_crc(tmp_path: Path) -> None:
    path = tmp_path / "rec"
    f = SlotFile(path)
    f.write(b"first")
    f.write(b"second")
    raw = bytearray(path.read_bytes())
    raw[slot_file.HEADER.size] ^= 0x01  # slot 0 holds serial 2: its body's first byte
    path.write_bytes(bytes(raw))
    assert _record(path) == (1, b"first")
    raw[SLOT + slot_file.HEADER.size] ^= 0x01  # and now slot 1 too
    path.write_bytes(bytes(raw))
    with pytest.raises(SlotFileError, match="neither slot"):
        _record(path)
    with pytest.raises(SlotFileError, match="not a slot file"):
        decode(b'{"open": {}}')


def test_a_record_too_large_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "rec"
    f = SlotFile(path)
    f.write(b"kept")
    with pytest.raises(ValueError, match="at most"):
        f.write(b"x" * (slot_file.MAX_BODY + 1))
    assert _record(path) == (1, b"kept")
    f.write(b"x" * slot_file.MAX_BODY)  # exactly full fits
    assert _record(path)[0] == 2


def test_a_file_that_changed_size_is_an_error_not_a_silent_write(tmp_path: Path) -> None:
    path = tmp_path / "rec"
    SlotFile(path).write(b"one")
    with open(path, "ab") as grow:
        grow.write(b"junk")
    with pytest.raises(OSError, match="changed size"):
        SlotFile(path, serial=1).write(b"two")


def test_a_ledger_in_the_json_format_is_read_and_converted(tmp_path: Path) -> None:
    path = tmp_path / "l"
    old = {"open": {"writes": 7, "bytes": 28672, "first": 100.0, "last": 107.5}}
    path.write_text(json.dumps(old))
    ledger = Ledger(path)
    assert (ledger.open.writes, ledger.open.bytes, ledger.open.seconds) == (7, 28672, 7.5)
    ledger.note(4096, 108.0)
    ledger.persist()
    assert slot_file.is_slot_file(path.read_bytes())  # converted at the first update
    assert read_file(path)["open"]["writes"] == 8
    ledger.note(4096, 109.0)
    ledger.persist()  # from now on in place
    inode = path.stat().st_ino
    ledger.note(4096, 110.0)
    ledger.persist()
    assert path.stat().st_ino == inode
    ledger.close()
    again = Ledger(path)
    assert (again.open.writes, again.open.first, again.open.last) == (10, 100.0, 110.0)
    again.close()


def test_every_persist_is_durable_and_survives_a_reopen(tmp_path: Path) -> None:
    """One persist per FUA write: each leaves a file a restart reads exactly."""
    path = tmp_path / "l"
    ledger = Ledger(path)
    for i in range(1, 12):
        ledger.note(512, 1000.0 + i)
        ledger.persist()
        assert read_file(path)["open"]["writes"] == i
    ledger.close()
    assert Ledger(path).open.writes == 11


def test_long_reasons_are_cut_to_fit_a_slot(tmp_path: Path) -> None:
    path = tmp_path / "l"
    path.write_text(json.dumps({"open": {}, "uncounted": "r" * 10_000, "async_in_flight": True}))
    ledger = Ledger(path)  # the async mark appends one more reason
    assert ledger.uncounted is not None and len(ledger.uncounted) == TEXT_LIMIT
    ledger.discard(5.0, "g" * 40)
    ledger.persist(force=True)
    ledger.close()
    again = Ledger(path)
    assert again.discarded is not None and again.discarded.uncounted is not None
    assert len(again.discarded.uncounted) == TEXT_LIMIT
    assert os.path.getsize(path) == 2 * SLOT
