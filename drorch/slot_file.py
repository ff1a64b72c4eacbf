"""A small record made durable in place: two alternating slots, one fdatasync per update.

`durable.write_atomic` replaces a file through a temporary file, a rename and two
fsyncs (file and folder): about half a millisecond here, fine for state that changes at
a role change, too slow for state that must be durable before every FUA write is
acknowledged (pyrepl's unshipped ledger, while a primary has no peer).

A slot file holds two fixed-size slots. An update writes the record into the slot its
serial number picks (serial % 2), so it never touches the slot holding the last durable
record, then fdatasyncs. The file's size never changes after it is created, so the
fdatasync has no metadata to commit: one data write and one device flush. Each slot
carries a CRC-32 over its serial, length and body. A read takes the valid slot with the
higher serial: a write torn by a crash leaves its slot invalid (or, if every byte
landed, valid and newer), and the other slot still holds the record before it.

The file is created (and a file of another format converted) with `write_atomic`, so
even its first record is old-or-new after a crash.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from pathlib import Path

from drorch.durable import pwrite_all, write_atomic

MAGIC = b"DRSL"
VERSION = 1
SLOT = 4096
HEADER = struct.Struct(">4sIQII")  # magic, version, serial, body length, crc32
MAX_BODY = SLOT - HEADER.size


class SlotFileError(ValueError):
    """The file is not a slot file, or neither slot holds a valid record."""


def _crc(serial: int, body: bytes) -> int:
    return zlib.crc32(struct.pack(">QI", serial, len(body)) + body)


def _slot(serial: int, body: bytes) -> bytes:
    if len(body) > MAX_BODY:
        raise ValueError(f"a slot holds at most {MAX_BODY} bytes, got {len(body)}")
    head = HEADER.pack(MAGIC, VERSION, serial, len(body), _crc(serial, body))
    return (head + body).ljust(SLOT, b"\0")


def _parse(raw: bytes) -> tuple[int, bytes] | None:
    """(serial, body) of a valid slot, None for an empty or torn one."""
    if len(raw) < HEADER.size:
        return None
    magic, version, serial, length, crc = HEADER.unpack_from(raw)
    if magic != MAGIC or version != VERSION or length > MAX_BODY:
        return None
    body = raw[HEADER.size : HEADER.size + length]
    if len(body) != length or _crc(serial, body) != crc:
        return None
    return serial, body


def is_slot_file(raw: bytes) -> bool:
    """A slot file's bytes (its first slot may be empty), not a file of another format."""
    return MAGIC in (raw[:4], raw[SLOT : SLOT + 4])


def decode(raw: bytes) -> tuple[int, bytes]:
    """The newest valid record of a slot file's bytes: (serial, body)."""
    if not is_slot_file(raw):
        raise SlotFileError("not a slot file (no DRSL magic in either slot)")
    found = [s for s in (_parse(raw[:SLOT]), _parse(raw[SLOT : 2 * SLOT])) if s is not None]
    if not found:
        raise SlotFileError("neither slot holds a valid record (both torn or empty)")
    return max(found)


class SlotFile:
    """Not thread-safe: the caller serialises updates (pyrepl: the engine lock)."""

    def __init__(self, path: Path, serial: int = 0) -> None:
        """`serial`: of the record now in the file (0: none yet, or not a slot file)."""
        self.path = path
        self.serial = serial
        self._fd: int | None = None

    def write(self, body: bytes) -> None:
        """Make `body` the durable record before returning."""
        serial = self.serial + 1
        slot = _slot(serial, body)
        if self._fd is None:
            if self.serial == 0:  # create (or convert) the whole file, old-or-new
                empty = bytes(SLOT)
                write_atomic(self.path, empty + slot if serial % 2 else slot + empty)
                self.serial = serial
                return
            self._fd = os.open(self.path, os.O_RDWR)
            if os.fstat(self._fd).st_size != 2 * SLOT:
                os.close(self._fd)
                self._fd = None
                raise OSError(errno.EIO, f"{self.path}: slot file changed size under us")
        pwrite_all(self._fd, slot, (serial % 2) * SLOT)
        os.fdatasync(self._fd)
        self.serial = serial

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
