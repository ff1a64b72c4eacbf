"""A minimal blocking NBD client for tests (fixed newstyle, NBD_OPT_GO; simple replies,
or structured replies and base:allocation block status when asked for).

It exists so tests can see exactly when each reply arrives (qemu-io cannot tell us),
and so malformed-traffic tests can speak a half-correct protocol on purpose.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from types import TracebackType

from drorch.replication.pyrepl import nbd_proto as nbd


class NbdError(Exception):
    def __init__(self, errno: int) -> None:
        super().__init__(f"NBD error {errno}")
        self.errno = errno


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("server closed the connection")
        buf += chunk
    return bytes(buf)


class NbdClient:
    def __init__(
        self,
        host: str,
        port: int,
        export: str = "",
        timeout: float = 10.0,
        *,
        structured: bool = False,
        allocation: bool = False,
    ) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._handle = 0
        self.structured = structured
        self.context_id: int | None = None
        self.last_error_message = ""
        try:
            self.size, self.flags = self._go(export, allocation)
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> NbdClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def read_only(self) -> bool:
        return bool(self.flags & nbd.TF_READ_ONLY)

    def _option(self, option: int, data: bytes = b"") -> list[tuple[int, bytes]]:
        self.sock.sendall(struct.pack(">QII", nbd.IHAVEOPT, option, len(data)) + data)
        out = []
        while True:
            _m, _o, rtype, length = struct.unpack(">QIII", recv_exact(self.sock, 20))
            out.append((rtype, recv_exact(self.sock, length)))
            if rtype == nbd.REP_ACK or rtype & (1 << 31):
                return out

    def _go(self, export: str, allocation: bool) -> tuple[int, int]:
        magic, opt, _hflags = struct.unpack(">QQH", recv_exact(self.sock, 18))
        assert (magic, opt) == (nbd.NBDMAGIC, nbd.IHAVEOPT)
        self.sock.sendall(struct.pack(">I", nbd.FLAG_FIXED_NEWSTYLE | nbd.FLAG_NO_ZEROES))
        name = export.encode()
        if self.structured:
            assert self._option(nbd.Opt.STRUCTURED_REPLY) == [(nbd.REP_ACK, b"")]
        if allocation:
            query = b"base:allocation"
            data = struct.pack(">I", len(name)) + name
            data += struct.pack(">II", 1, len(query)) + query
            for rtype, payload in self._option(nbd.Opt.SET_META_CONTEXT, data):
                if rtype == nbd.REP_META_CONTEXT:
                    self.context_id = struct.unpack_from(">I", payload)[0]
        data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
        self.sock.sendall(struct.pack(">QII", nbd.IHAVEOPT, nbd.Opt.GO, len(data)) + data)
        size = flags = -1
        while True:
            _m, _o, rtype, length = struct.unpack(">QIII", recv_exact(self.sock, 20))
            payload = recv_exact(self.sock, length)
            if rtype == nbd.REP_ACK:
                return size, flags
            if rtype == nbd.REP_INFO and struct.unpack_from(">H", payload)[0] == nbd.INFO_EXPORT:
                _t, size, flags = struct.unpack(">HQH", payload)
            elif rtype & (1 << 31):
                raise NbdError(rtype)

    def request(
        self, cmd: int, offset: int = 0, length: int = 0, data: bytes = b"", flags: int = 0
    ) -> bytes:
        self._handle += 1
        header = struct.pack(">IHHQQI", nbd.REQUEST_MAGIC, flags, cmd, self._handle, offset, length)
        self.sock.sendall(header + data)
        if cmd == nbd.Cmd.DISC:
            return b""
        return self.reply(cmd, length)

    def reply(self, cmd: int, length: int) -> bytes:
        """One whole reply (simple, or structured chunks up to DONE): a read's data, a
        block status chunk's descriptors as raw bytes, or b""; NbdError on an error."""
        (magic,) = struct.unpack(">I", recv_exact(self.sock, 4))
        if magic == nbd.SIMPLE_REPLY_MAGIC:
            error, handle = struct.unpack(">IQ", recv_exact(self.sock, 12))
            assert handle == self._handle
            if error:
                raise NbdError(error)
            return recv_exact(self.sock, length) if cmd == nbd.Cmd.READ else b""
        assert magic == nbd.STRUCTURED_REPLY_MAGIC and self.structured
        out = b""
        error = 0
        while True:
            flags, kind, handle, size = struct.unpack(">HHQI", recv_exact(self.sock, 16))
            assert handle == self._handle
            payload = recv_exact(self.sock, size)
            if kind & (1 << 15):
                error, mlen = struct.unpack_from(">IH", payload)
                self.last_error_message = payload[6 : 6 + mlen].decode()
            elif kind == nbd.ReplyType.OFFSET_DATA:
                out += payload[8:]
            elif kind == nbd.ReplyType.BLOCK_STATUS:
                out += payload
            if flags & nbd.REPLY_FLAG_DONE:
                break
            (magic,) = struct.unpack(">I", recv_exact(self.sock, 4))
            assert magic == nbd.STRUCTURED_REPLY_MAGIC
        if error:
            raise NbdError(error)
        return out

    def block_status(
        self, offset: int, length: int, *, req_one: bool = False
    ) -> tuple[int, list[tuple[int, int]]]:
        """(context id, [(extent length, flags), ...])."""
        flags = nbd.CMD_FLAG_REQ_ONE if req_one else 0
        raw = self.request(nbd.Cmd.BLOCK_STATUS, offset, length, flags=flags)
        (context,) = struct.unpack_from(">I", raw)
        pairs = struct.unpack_from(f">{(len(raw) - 4) // 4}I", raw, 4)
        return context, list(zip(pairs[::2], pairs[1::2], strict=True))

    def write(self, offset: int, data: bytes, *, fua: bool = False) -> None:
        self.request(nbd.Cmd.WRITE, offset, len(data), data, nbd.CMD_FLAG_FUA if fua else 0)

    def read(self, offset: int, length: int) -> bytes:
        return self.request(nbd.Cmd.READ, offset, length)

    def flush(self) -> None:
        self.request(nbd.Cmd.FLUSH)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.request(nbd.Cmd.DISC)
        self.sock.close()
