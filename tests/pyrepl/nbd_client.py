"""A minimal blocking NBD client for tests (fixed newstyle, NBD_OPT_GO, simple replies).

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
    def __init__(self, host: str, port: int, export: str = "", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._handle = 0
        try:
            self.size, self.flags = self._go(export)
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

    def _go(self, export: str) -> tuple[int, int]:
        magic, opt, _hflags = struct.unpack(">QQH", recv_exact(self.sock, 18))
        assert (magic, opt) == (nbd.NBDMAGIC, nbd.IHAVEOPT)
        self.sock.sendall(struct.pack(">I", nbd.FLAG_FIXED_NEWSTYLE | nbd.FLAG_NO_ZEROES))
        name = export.encode()
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
        magic, error, handle = struct.unpack(">IIQ", recv_exact(self.sock, 16))
        assert magic == nbd.SIMPLE_REPLY_MAGIC and handle == self._handle
        if error:
            raise NbdError(error)
        return recv_exact(self.sock, length) if cmd == nbd.Cmd.READ else b""

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
