"""Sans-I/O NBD handshake (fixed newstyle): option haggling up to transmission.

`Handshake` is fed the client's bytes and returns the bytes to send back. Options:
EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY, LIST_META_CONTEXT and
SET_META_CONTEXT (base:allocation, nbd_meta.py); anything else is NBD_REP_ERR_UNSUP and
the client may go on. Once an export is chosen it reports `done`, and `negotiated` says
what the connection agreed. Constants and the transmission phase are in nbd_proto.py.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping

from drorch.replication.pyrepl import nbd_meta as meta
from drorch.replication.pyrepl.errors import MetaOptionError, NbdProtocolError
from drorch.replication.pyrepl.nbd_proto import (
    FLAG_FIXED_NEWSTYLE,
    FLAG_NO_ZEROES,
    IHAVEOPT,
    INFO_BLOCK_SIZE,
    INFO_DESCRIPTION,
    INFO_EXPORT,
    INFO_NAME,
    KNOWN_CLIENT_FLAGS,
    MAX_OPTION_LENGTH,
    MAX_PAYLOAD,
    NBDMAGIC,
    PREFERRED_BLOCK,
    REP_ACK,
    REP_ERR_INVALID,
    REP_ERR_POLICY,
    REP_ERR_UNKNOWN,
    REP_ERR_UNSUP,
    REP_INFO,
    REP_META_CONTEXT,
    REP_SERVER,
    REPLY_MAGIC,
    Export,
    Negotiated,
    Opt,
)

_OPT_HEADER = struct.Struct(">QII")
_REPLY_HEADER = struct.Struct(">QIII")


def greeting() -> bytes:
    return struct.pack(">QQH", NBDMAGIC, IHAVEOPT, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)


def option_reply(option: int, reply: int, data: bytes = b"") -> bytes:
    return _REPLY_HEADER.pack(REPLY_MAGIC, option, reply, len(data)) + data


class Handshake:
    """Server side of the handshake. Feed client bytes with `receive()`; it returns what
    to send. `done` with `export` set means transmission starts; `closed` means hang up
    (after sending what was returned). `reason` says why, for the log.

    `admit` is asked once an export is chosen (NBD_OPT_GO, NBD_OPT_EXPORT_NAME), before
    transmission is agreed: None lets the client in; a reason refuses it (`refused`):
    NBD_REP_ERR_POLICY with that reason on GO, a bare close on EXPORT_NAME (which has no
    error reply), and the handshake closes."""

    def __init__(
        self, exports: Mapping[str, Export], admit: Callable[[Export], str | None] | None = None
    ) -> None:
        self._exports = exports
        self._admit = admit
        self.refused = False
        self._buf = bytearray()
        self._have_client_flags = False
        self.no_zeroes = False
        self.done = False
        self.closed = False
        self.export: Export | None = None
        self.reason = ""
        self.structured = False
        self._allocation_for: Export | None = None  # base:allocation selected for it

    @property
    def negotiated(self) -> Negotiated | None:
        """Set once `done`: the export and the extensions agreed for it."""
        if self.export is None:
            return None
        selected = self._allocation_for is self.export
        return Negotiated(self.export, self.structured, meta.ALLOCATION_ID if selected else None)

    def _flags(self, export: Export) -> int:
        return Negotiated(export, self.structured).transmission_flags

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
            raise NbdProtocolError("handshake already finished")
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
            if self._refuse(export):
                return b""
            self._start(export)
            pad = b"" if self.no_zeroes else bytes(124)
            return struct.pack(">QH", export.size, self._flags(export)) + pad
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
        if option == Opt.STRUCTURED_REPLY:
            if data:
                return option_reply(
                    option, REP_ERR_INVALID, b"NBD_OPT_STRUCTURED_REPLY takes no data"
                )
            self.structured = True
            return option_reply(option, REP_ACK)
        if option in (Opt.LIST_META_CONTEXT, Opt.SET_META_CONTEXT):
            return self._meta_context(option, data)
        return option_reply(option, REP_ERR_UNSUP, f"option {option} is not supported".encode())

    def _meta_context(self, option: int, data: bytes) -> bytes:
        if option == Opt.SET_META_CONTEXT:
            self._allocation_for = None  # a SET replaces the selection, even when it fails
        if not self.structured:
            return option_reply(
                option, REP_ERR_INVALID, b"negotiate NBD_OPT_STRUCTURED_REPLY first"
            )
        try:
            query = meta.parse_meta_option(data)
        except MetaOptionError as exc:
            return option_reply(option, REP_ERR_INVALID, str(exc).encode())
        export = self._lookup(query.export_name)
        if export is None:
            return option_reply(
                option, REP_ERR_UNKNOWN, f"no export named {query.export_name!r}".encode()
            )
        out = b""
        if option == Opt.LIST_META_CONTEXT:
            for name in meta.listed(query.queries):
                out += option_reply(option, REP_META_CONTEXT, meta.context_reply(0, name))
        elif meta.selected(query.queries):
            self._allocation_for = export
            reply = meta.context_reply(meta.ALLOCATION_ID, meta.BASE_ALLOCATION)
            out += option_reply(option, REP_META_CONTEXT, reply)
        return out + option_reply(option, REP_ACK)

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
        if option == Opt.GO and self._refuse(export):
            return option_reply(option, REP_ERR_POLICY, self.reason.encode())
        out = option_reply(
            option,
            REP_INFO,
            struct.pack(">HQH", INFO_EXPORT, export.size, self._flags(export)),
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

    def _refuse(self, export: Export) -> bool:
        why = self._admit(export) if self._admit is not None else None
        if why is not None:
            self.refused = True
            self._close(why)
        return why is not None

    def _start(self, export: Export) -> None:
        self.export = export
        self.done = True
        self.reason = f"export {export.name!r} selected"
