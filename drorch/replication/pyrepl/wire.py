"""Sans-I/O replication-link framing.

Every frame is a 28-byte header followed by `length` payload bytes:

    magic u32 | type u8 | flags u8 | reserved u16 | seq u64 | offset u64 | length u32

Data frames (DATA, RS_DATA) carry raw bytes at `offset`; ZERO/RS_ZERO carry an 8-byte
count of zero bytes at `offset`; control frames carry JSON.
Frames in the primary -> secondary direction are numbered by `seq` and applied in that
order; ACK(seq) is cumulative. This module only turns bytes into frames and back.
"""

from __future__ import annotations

import enum
import json
import struct
from typing import Any, NamedTuple

from drorch.replication.pyrepl.errors import WireError as WireError

MAGIC = 0x50524550  # "PREP"
HEADER = struct.Struct(">IBBHQQI")
COUNT = struct.Struct(">Q")
MAX_PAYLOAD = 64 * 1024 * 1024
PROTOCOL_VERSION = 1

FLAG_DURABLE = 1  # receiver makes the write durable (fdatasync) before acknowledging


class FrameType(enum.IntEnum):
    HELLO = 1  # JSON: who I am, my generation/epoch/role/disk
    BITMAP = 2  # raw dirty bitmap
    REJECT = 3  # JSON: {"reason": ...}; the sender closes
    DATA = 10  # write payload at offset
    ZERO = 11  # write zeroes: 8-byte count at offset
    FLUSH = 12  # make everything before this durable
    RS_BEGIN = 20  # JSON: resync starts, total bytes
    RS_DATA = 21  # resync payload for one region
    RS_ZERO = 22  # resync: the region is all zeroes
    RS_END = 23  # JSON: resync done, the source's generation
    OUTDATE = 24  # JSON: the source stops shipping (pull-ahead); the target is Outdated
    ROLE = 30  # JSON: my role changed
    EPOCH = 31  # JSON: my fencing epoch changed
    DUAL = 32  # JSON: two primaries allowed or not (dual.py)
    MODE = 33  # JSON: replicate sync|async from here on (modeswitch.py)
    VERIFY_DIGESTS = 40  # JSON: region digests, compare against yours and answer
    VERIFY_ASK = 41  # JSON: send me your digests in stream order
    VERIFY_RESULT = 42  # JSON: mismatching regions
    ACK = 50  # cumulative acknowledgement of seq
    PING = 51
    PONG = 52
    # two primaries (dual.py): the second primary forwards its writes to the first
    FWD_DATA = 60  # a second primary's write at offset, for the first to apply
    FWD_ZERO = 61  # a second primary's zeroes: 8-byte count at offset
    FWD_DONE = 62  # the first primary's answer: offset = the FWD frame's seq, flags = outcome


JSON_FRAMES = frozenset(
    {
        FrameType.HELLO,
        FrameType.REJECT,
        FrameType.RS_BEGIN,
        FrameType.RS_END,
        FrameType.OUTDATE,
        FrameType.ROLE,
        FrameType.EPOCH,
        FrameType.DUAL,
        FrameType.MODE,
        FrameType.VERIFY_DIGESTS,
        FrameType.VERIFY_ASK,
        FrameType.VERIFY_RESULT,
    }
)


_EMPTY = frozenset(
    {FrameType.FLUSH, FrameType.ACK, FrameType.PING, FrameType.PONG, FrameType.FWD_DONE}
)


class Header(NamedTuple):
    """A parsed frame header (a tuple: every frame on the link builds one)."""

    type: FrameType
    flags: int
    seq: int
    offset: int
    length: int


_FRAME_TYPES = {t.value: t for t in FrameType}


def parse_header(raw: bytes | bytearray | memoryview) -> Header:
    if len(raw) != HEADER.size:
        raise WireError(f"frame header must be {HEADER.size} bytes, got {len(raw)}")
    magic, typ, flags, _reserved, seq, offset, length = HEADER.unpack(raw)
    if magic != MAGIC:
        raise WireError(f"bad frame magic {magic:#x}")
    ftype = _FRAME_TYPES.get(typ)
    if ftype is None:
        raise WireError(f"unknown frame type {typ}")
    if length > MAX_PAYLOAD:
        raise WireError(f"frame payload of {length} bytes exceeds {MAX_PAYLOAD}")
    if ftype in (FrameType.ZERO, FrameType.RS_ZERO, FrameType.FWD_ZERO) and length != COUNT.size:
        raise WireError(f"{ftype.name} frames carry an 8-byte count, got {length} bytes")
    if ftype in _EMPTY and length:
        raise WireError(f"{ftype.name} frames carry no payload")
    return Header(ftype, flags, seq, offset, length)


def header(
    ftype: FrameType, *, seq: int = 0, offset: int = 0, length: int = 0, flags: int = 0
) -> bytes:
    return HEADER.pack(MAGIC, ftype, flags, 0, seq, offset, length)


def json_frame(ftype: FrameType, body: dict[str, Any], *, seq: int = 0) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    return header(ftype, seq=seq, length=len(payload)) + payload


def decode_json(head: Header, payload: bytes | bytearray | memoryview) -> dict[str, Any]:
    try:
        body = json.loads(bytes(payload))
    except ValueError as exc:
        raise WireError(f"{head.type.name}: payload is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise WireError(f"{head.type.name}: payload must be a JSON object")
    return body


def zero_frame(ftype: FrameType, *, seq: int, offset: int, count: int, flags: int = 0) -> bytes:
    """ZERO/RS_ZERO: `count` zero bytes at `offset`; the count is the 8-byte payload."""
    return header(ftype, seq=seq, offset=offset, length=8, flags=flags) + COUNT.pack(count)


def zero_count(head: Header, payload: bytes | bytearray | memoryview) -> int:
    (count,) = COUNT.unpack(bytes(payload))
    if count > MAX_PAYLOAD * 1024:
        raise WireError(f"{head.type.name} of {count} bytes is implausibly large")
    return int(count)


class FrameDecoder:
    """Incremental decoder for tests and tools: feed bytes, get (Header, payload) pairs."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[Header, bytes]]:
        self._buf += data
        frames: list[tuple[Header, bytes]] = []
        while len(self._buf) >= HEADER.size:
            head = parse_header(bytes(self._buf[: HEADER.size]))
            end = HEADER.size + head.length
            if len(self._buf) < end:
                break
            frames.append((head, bytes(self._buf[HEADER.size : end])))
            del self._buf[:end]
        return frames
