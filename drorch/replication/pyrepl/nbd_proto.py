"""Sans-I/O NBD server protocol: the fixed-newstyle handshake and transmission framing.

Nothing here touches a socket. `Handshake` is fed the client's bytes and returns the
bytes to send back; once an export is chosen (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) it
reports `done` and the connection enters transmission, where `parse_request()` decodes
28-byte request headers and `check_request()` decides, with a reason, which NBD error a
request earns. Reference: the NBD protocol document (NetworkBlockDevice/nbd doc/proto.md).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Mapping
from dataclasses import dataclass

NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT"
REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

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


CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1

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
_OPT_HEADER = struct.Struct(">QII")
_REPLY_HEADER = struct.Struct(">QIII")


class ProtocolError(Exception):
    """The client broke the protocol; the only safe answer is to close its connection."""


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


def greeting() -> bytes:
    return struct.pack(">QQH", NBDMAGIC, IHAVEOPT, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)


def option_reply(option: int, reply: int, data: bytes = b"") -> bytes:
    return _REPLY_HEADER.pack(REPLY_MAGIC, option, reply, len(data)) + data


class Handshake:
    """Server side of the handshake. Feed client bytes with `receive()`; it returns what
    to send. `done` with `export` set means transmission starts; `closed` means hang up
    (after sending what was returned). `reason` says why, for the log."""

    def __init__(self, exports: Mapping[str, Export]) -> None:
        self._exports = exports
        self._buf = bytearray()
        self._have_client_flags = False
        self.no_zeroes = False
        self.done = False
        self.closed = False
        self.export: Export | None = None
        self.reason = ""

    @property
    def leftover(self) -> bool:
        """Bytes received beyond the end of the handshake (a client that did not wait)."""
        return bool(self._buf)

    def _lookup(self, name: str) -> Export | None:
        if name == "" and len(self._exports) == 1:
            return next(iter(self._exports.values()))
        return self._exports.get(name)

    def receive(self, data: bytes) -> bytes:
        if self.done or self.closed:
            raise ProtocolError("handshake already finished")
        self._buf += data
        out = bytearray()
        while not (self.done or self.closed):
            if not self._have_client_flags:
                if len(self._buf) < 4:
                    break
                (flags,) = struct.unpack_from(">I", self._buf)
                del self._buf[:4]
                if flags & ~KNOWN_CLIENT_FLAGS:
                    self._close(f"unknown client flags {flags:#x}")
                    break
                if not flags & FLAG_FIXED_NEWSTYLE:
                    self._close("client does not speak fixed newstyle")
                    break
                self.no_zeroes = bool(flags & FLAG_NO_ZEROES)
                self._have_client_flags = True
                continue
            if len(self._buf) < _OPT_HEADER.size:
                break
            magic, option, length = _OPT_HEADER.unpack_from(self._buf)
            if magic != IHAVEOPT:
                self._close(f"bad option magic {magic:#x}")
                break
            if length > MAX_OPTION_LENGTH:
                self._close(f"option {option} data of {length} bytes is too large")
                break
            if len(self._buf) < _OPT_HEADER.size + length:
                break
            payload = bytes(self._buf[_OPT_HEADER.size : _OPT_HEADER.size + length])
            del self._buf[: _OPT_HEADER.size + length]
            out += self._option(option, payload)
        return bytes(out)

    def _close(self, reason: str) -> None:
        self.closed = True
        self.reason = reason

    def _option(self, option: int, data: bytes) -> bytes:
        if option == Opt.EXPORT_NAME:
            export = self._lookup(data.decode("utf-8", "replace"))
            if export is None:
                self._close(f"unknown export {data!r} (NBD_OPT_EXPORT_NAME)")
                return b""
            self._start(export)
            pad = b"" if self.no_zeroes else bytes(124)
            return struct.pack(">QH", export.size, export.transmission_flags) + pad
        if option == Opt.ABORT:
            self._close("client aborted the handshake")
            return option_reply(option, REP_ACK)
        if option == Opt.LIST:
            if data:
                return option_reply(option, REP_ERR_INVALID, b"NBD_OPT_LIST takes no data")
            out = b"".join(
                option_reply(option, REP_SERVER, struct.pack(">I", len(n.encode())) + n.encode())
                for n in self._exports
            )
            return out + option_reply(option, REP_ACK)
        if option in (Opt.INFO, Opt.GO):
            return self._info_or_go(option, data)
        return option_reply(option, REP_ERR_UNSUP, f"option {option} is not supported".encode())

    def _info_or_go(self, option: int, data: bytes) -> bytes:
        if len(data) < 6:
            return option_reply(option, REP_ERR_INVALID, b"truncated INFO/GO request")
        (name_len,) = struct.unpack_from(">I", data)
        if 4 + name_len + 2 > len(data):
            return option_reply(option, REP_ERR_INVALID, b"export name overruns the option")
        name = data[4 : 4 + name_len].decode("utf-8", "replace")
        (count,) = struct.unpack_from(">H", data, 4 + name_len)
        requests_at = 6 + name_len
        if requests_at + 2 * count != len(data):
            return option_reply(option, REP_ERR_INVALID, b"information request count mismatch")
        wanted = set(struct.unpack_from(f">{count}H", data, requests_at))
        export = self._lookup(name)
        if export is None:
            return option_reply(option, REP_ERR_UNKNOWN, f"no export named {name!r}".encode())
        out = option_reply(
            option,
            REP_INFO,
            struct.pack(">HQH", INFO_EXPORT, export.size, export.transmission_flags),
        )
        if INFO_NAME in wanted:
            out += option_reply(
                option, REP_INFO, struct.pack(">H", INFO_NAME) + export.name.encode()
            )
        if INFO_DESCRIPTION in wanted and export.description:
            desc = export.description.encode()
            out += option_reply(option, REP_INFO, struct.pack(">H", INFO_DESCRIPTION) + desc)
        if INFO_BLOCK_SIZE in wanted:
            out += option_reply(
                option,
                REP_INFO,
                struct.pack(">HIII", INFO_BLOCK_SIZE, 1, PREFERRED_BLOCK, MAX_PAYLOAD),
            )
        out += option_reply(option, REP_ACK)
        if option == Opt.GO:
            self._start(export)
        return out

    def _start(self, export: Export) -> None:
        self.export = export
        self.done = True
        self.reason = f"export {export.name!r} selected"


@dataclass(frozen=True)
class Request:
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
    """Decode one 28-byte request header; ProtocolError if the magic is wrong."""
    if len(header) != REQUEST.size:
        raise ProtocolError(f"request header must be {REQUEST.size} bytes, got {len(header)}")
    magic, flags, typ, handle, offset, length = REQUEST.unpack(header)
    if magic != REQUEST_MAGIC:
        raise ProtocolError(f"bad request magic {magic:#x}")
    return Request(flags, typ, handle, offset, length)


@dataclass(frozen=True)
class Verdict:
    """0 = serve it; otherwise the NBD error to answer with. `close` means the payload
    cannot be skipped safely, so the connection must be dropped after answering."""

    error: int
    reason: str = ""
    close: bool = False


OK = Verdict(0)


def check_request(req: Request, export: Export, *, writable: bool) -> Verdict:
    """Decide what a request earns before touching the disk."""
    if req.type == Cmd.WRITE and req.length > MAX_PAYLOAD:
        return Verdict(EINVAL, f"write of {req.length} bytes exceeds {MAX_PAYLOAD}", close=True)
    if req.type in (Cmd.DISC, Cmd.FLUSH):
        return OK
    if req.type not in (Cmd.READ, Cmd.WRITE, Cmd.TRIM, Cmd.WRITE_ZEROES, Cmd.CACHE):
        return Verdict(EINVAL, f"unsupported command {req.type}")
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
