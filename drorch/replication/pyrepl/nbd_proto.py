"""Sans-I/O NBD server protocol: constants, exports and the transmission phase.

Nothing here touches a socket. The handshake (nbd_handshake.py) ends with what the
connection negotiated (`Negotiated`: the export, structured replies, the
`base:allocation` metadata context of nbd_meta.py). In transmission `parse_request()`
decodes 28-byte request headers, `check_request()` decides, with a reason, which NBD
error a request earns (undefined command flags included), and the reply encoders build
simple replies or structured reply chunks. Reference: the NBD protocol document
(NetworkBlockDevice/nbd doc/proto.md).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import NamedTuple

from drorch.replication.pyrepl.errors import NbdProtocolError

NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT"
REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1
KNOWN_CLIENT_FLAGS = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES

# transmission flags
TF_HAS_FLAGS = 1 << 0
TF_READ_ONLY = 1 << 1
TF_SEND_FLUSH = 1 << 2
TF_SEND_FUA = 1 << 3
TF_SEND_TRIM = 1 << 5
TF_SEND_WRITE_ZEROES = 1 << 6
TF_SEND_DF = 1 << 7  # only with structured replies: a read is always one chunk here
TF_CAN_MULTI_CONN = 1 << 8


class Opt(enum.IntEnum):
    EXPORT_NAME = 1
    ABORT = 2
    LIST = 3
    STARTTLS = 5
    INFO = 6
    GO = 7
    STRUCTURED_REPLY = 8
    LIST_META_CONTEXT = 9
    SET_META_CONTEXT = 10
    EXTENDED_HEADERS = 11


REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
REP_ERR_UNSUP = (1 << 31) + 1
REP_ERR_POLICY = (1 << 31) + 2
REP_ERR_INVALID = (1 << 31) + 3
REP_ERR_UNKNOWN = (1 << 31) + 6

INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3


class Cmd(enum.IntEnum):
    READ = 0
    WRITE = 1
    DISC = 2
    FLUSH = 3
    TRIM = 4
    CACHE = 5
    WRITE_ZEROES = 6
    BLOCK_STATUS = 7


CMD_FLAG_FUA = 1 << 0  # valid on every command (ignored where nothing is written)
CMD_FLAG_NO_HOLE = 1 << 1  # WRITE_ZEROES
CMD_FLAG_DF = 1 << 2  # READ, once structured replies are negotiated
CMD_FLAG_REQ_ONE = 1 << 3  # BLOCK_STATUS
CMD_FLAG_FAST_ZERO = 1 << 4  # WRITE_ZEROES, only if advertised (it is not: EINVAL)

REPLY_FLAG_DONE = 1 << 0


class ReplyType(enum.IntEnum):
    NONE = 0
    OFFSET_DATA = 1
    OFFSET_HOLE = 2
    BLOCK_STATUS = 5
    ERROR = (1 << 15) + 1
    ERROR_OFFSET = (1 << 15) + 2


# NBD error numbers (not the host's errno values)
EPERM = 1
EIO = 5
EINVAL = 22
ENOSPC = 28
ENOTSUP = 95

MAX_OPTION_LENGTH = 64 * 1024
MAX_PAYLOAD = 32 * 1024 * 1024
PREFERRED_BLOCK = 4096

REQUEST = struct.Struct(">IHHQQI")
SIMPLE_REPLY = struct.Struct(">IIQ")
CHUNK = struct.Struct(">IHHQI")  # magic, flags, type, handle, payload length
MAX_ERROR_MESSAGE = 4096


@dataclass(frozen=True)
class Export:
    name: str
    size: int
    read_only: bool
    description: str = ""

    @property
    def transmission_flags(self) -> int:
        flags = TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA | TF_CAN_MULTI_CONN
        if self.read_only:
            return flags | TF_READ_ONLY
        return flags | TF_SEND_TRIM | TF_SEND_WRITE_ZEROES


@dataclass(frozen=True)
class Negotiated:
    """What one connection's handshake agreed: the export, whether replies may be
    structured, and the base:allocation context id (None: not selected)."""

    export: Export
    structured: bool = False
    allocation_id: int | None = None

    @property
    def transmission_flags(self) -> int:
        return self.export.transmission_flags | (TF_SEND_DF if self.structured else 0)


class Request(NamedTuple):
    """A parsed request header (a tuple: every request builds one)."""

    flags: int
    type: int
    handle: int
    offset: int
    length: int

    @property
    def fua(self) -> bool:
        return bool(self.flags & CMD_FLAG_FUA)

    @property
    def has_payload(self) -> bool:
        return self.type == Cmd.WRITE


def parse_request(header: bytes | bytearray | memoryview) -> Request:
    """Decode one 28-byte request header; NbdProtocolError if the magic is wrong."""
    if len(header) != REQUEST.size:
        raise NbdProtocolError(f"request header must be {REQUEST.size} bytes, got {len(header)}")
    magic, flags, typ, handle, offset, length = REQUEST.unpack(header)
    if magic != REQUEST_MAGIC:
        raise NbdProtocolError(f"bad request magic {magic:#x}")
    return Request(flags, typ, handle, offset, length)


@dataclass(frozen=True)
class Verdict:
    """0 = serve it; otherwise the NBD error to answer with. `close` means the payload
    cannot be skipped safely, so the connection must be dropped after answering."""

    error: int
    reason: str = ""
    close: bool = False


OK = Verdict(0)

_KNOWN = (
    Cmd.READ,
    Cmd.WRITE,
    Cmd.DISC,
    Cmd.FLUSH,
    Cmd.TRIM,
    Cmd.CACHE,
    Cmd.WRITE_ZEROES,
    Cmd.BLOCK_STATUS,
)
_FLAG_NAMES = {
    CMD_FLAG_FUA: "FUA",
    CMD_FLAG_NO_HOLE: "NO_HOLE",
    CMD_FLAG_DF: "DF",
    CMD_FLAG_REQ_ONE: "REQ_ONE",
    CMD_FLAG_FAST_ZERO: "FAST_ZERO",
}


def valid_flags(cmd: int, *, structured: bool) -> int:
    """The command flags this server accepts on `cmd` (FUA on every command)."""
    if cmd == Cmd.WRITE_ZEROES:
        return CMD_FLAG_FUA | CMD_FLAG_NO_HOLE
    if cmd == Cmd.READ and structured:
        return CMD_FLAG_FUA | CMD_FLAG_DF
    if cmd == Cmd.BLOCK_STATUS:
        return CMD_FLAG_FUA | CMD_FLAG_REQ_ONE
    return CMD_FLAG_FUA


def _flag_names(flags: int) -> str:
    names = [name for bit, name in _FLAG_NAMES.items() if flags & bit]
    rest = flags & ~sum(_FLAG_NAMES)
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names)


def check_request(
    req: Request,
    export: Export,
    *,
    writable: bool,
    structured: bool = False,
    allocation: bool = False,
) -> Verdict:
    """Decide what a request earns before touching the disk. `structured` and
    `allocation`: whether the handshake negotiated structured replies and selected
    base:allocation."""
    if req.type == Cmd.WRITE and req.length > MAX_PAYLOAD:
        return Verdict(EINVAL, f"write of {req.length} bytes exceeds {MAX_PAYLOAD}", close=True)
    if req.type not in _KNOWN:
        return Verdict(EINVAL, f"unsupported command {req.type}")
    if req.type == Cmd.DISC:
        return OK  # never answered, whatever its flags: the client is going
    bad = req.flags & ~valid_flags(req.type, structured=structured)
    if bad:
        name = Cmd(req.type).name
        return Verdict(EINVAL, f"command flags {_flag_names(bad)} are not valid on {name}")
    if req.type == Cmd.FLUSH:
        return OK
    if req.type == Cmd.BLOCK_STATUS:
        if not allocation:
            return Verdict(EINVAL, "block status without a negotiated metadata context")
        if req.length == 0:
            return Verdict(EINVAL, "block status of 0 bytes")
    if req.type == Cmd.READ and req.length > MAX_PAYLOAD:
        return Verdict(EINVAL, f"read of {req.length} bytes exceeds {MAX_PAYLOAD}")
    if req.offset + req.length > export.size:
        err = ENOSPC if req.type in (Cmd.WRITE, Cmd.WRITE_ZEROES) else EINVAL
        return Verdict(err, f"{req.offset}+{req.length} is beyond the end ({export.size})")
    if req.type in (Cmd.WRITE, Cmd.TRIM, Cmd.WRITE_ZEROES) and not writable:
        return Verdict(EPERM, "export is read-only (this side is secondary)")
    return OK


def simple_reply(handle: int, error: int = 0) -> bytes:
    return SIMPLE_REPLY.pack(SIMPLE_REPLY_MAGIC, error, handle)


def chunk(handle: int, kind: int, payload: bytes = b"", *, done: bool = True) -> bytes:
    """One structured reply chunk (header and payload)."""
    flags = REPLY_FLAG_DONE if done else 0
    return CHUNK.pack(STRUCTURED_REPLY_MAGIC, flags, kind, handle, len(payload)) + payload


def data_chunk_header(handle: int, offset: int, length: int) -> bytes:
    """Header of the one, final NBD_REPLY_TYPE_OFFSET_DATA chunk of a read; the
    `length` bytes of data follow it."""
    header = CHUNK.pack(
        STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE, ReplyType.OFFSET_DATA, handle, 8 + length
    )
    return header + struct.pack(">Q", offset)


def error_chunk(handle: int, error: int, message: str = "") -> bytes:
    text = message.encode()[:MAX_ERROR_MESSAGE]
    return chunk(handle, ReplyType.ERROR, struct.pack(">IH", error, len(text)) + text)


def block_status_chunk(handle: int, context_id: int, extents: list[tuple[int, int]]) -> bytes:
    """NBD_REPLY_TYPE_BLOCK_STATUS: the context id, then (length, flags) descriptors."""
    if not extents:
        raise ValueError("a block status reply needs at least one extent")
    body = struct.pack(">I", context_id) + b"".join(struct.pack(">II", n, f) for n, f in extents)
    return chunk(handle, ReplyType.BLOCK_STATUS, body)
