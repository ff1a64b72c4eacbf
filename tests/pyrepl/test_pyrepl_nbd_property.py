"""Property: no sequence of client behaviour makes one connection's bytes appear in
another's write.

Hypothesis drives 2-3 concurrent raw NBD connections (the socket code is here, on
purpose independent of the server's) against a real `drorch repl serve` primary with a
real sync secondary. Each connection mixes full writes (small, and large enough for the
kernel-pipe path), reads, flushes, aborted payloads (EOF, RST, a stall past the payload
timeout) and bad request magic; a dropped connection is replaced by a new one. Every
connection writes only in its own MiB, so the expected content is exact whatever the
interleaving; aborted writes aim anywhere, including other connections' ranges and the
untouched last MiB. Each example starts from a zeroed volume; after it, on both sites,
every acknowledged write's bytes are exactly where written and nothing else changed.
Bounded: 40 examples and at most 50 s.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pyrepl.conftest import ServeProcess, wait_until

MiB = 1024 * 1024
SIZE = 4 * MiB  # connection i owns [i MiB, i+1 MiB); the last MiB only ever sees aborts
STALL = 0.3  # the daemon's --nbd-payload-timeout
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_WRITE_ZEROES = 0, 1, 2, 3, 6
FLAG_FUA = 1
EPERM = 1
Start = Callable[..., ServeProcess]


# ------------------------------------------------------------------ raw client
def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("server closed the connection")
        buf += chunk
    return bytes(buf)


def connect(port: int) -> socket.socket:
    """Fixed newstyle, NO_ZEROES, NBD_OPT_GO on export "vol"; simple replies only."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    magic, opt, _flags = struct.unpack(">QQH", recv_exact(sock, 18))
    assert (magic, opt) == (0x4E42444D41474943, 0x49484156454F5054)
    sock.sendall(struct.pack(">I", 0b11))
    data = struct.pack(">I", 3) + b"vol" + struct.pack(">H", 0)
    sock.sendall(struct.pack(">QII", 0x49484156454F5054, 7, len(data)) + data)
    while True:
        _m, _o, rtype, length = struct.unpack(">QIII", recv_exact(sock, 20))
        recv_exact(sock, length)
        if rtype == 1:  # NBD_REP_ACK
            return sock
        assert not rtype & (1 << 31), f"option refused: {rtype:#x}"


def header(cmd: int, handle: int, offset: int, length: int, flags: int = 0) -> bytes:
    return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, handle, offset, length)


def simple_reply(sock: socket.socket, handle: int) -> int:
    magic, error, got = struct.unpack(">IIQ", recv_exact(sock, 16))
    assert magic == SIMPLE_REPLY_MAGIC and got == handle, (magic, got, handle)
    return int(error)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


# ------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class Write:
    at: int  # offset inside the connection's own MiB
    length: int
    fua: bool


@dataclass(frozen=True)
class Read:
    at: int
    length: int


@dataclass(frozen=True)
class Flush:
    pass


@dataclass(frozen=True)
class Abort:
    offset: int  # absolute: anywhere in the volume
    length: int
    sent: int  # payload bytes sent before giving up (< length)
    how: str  # eof | rst | stall


@dataclass(frozen=True)
class BadMagic:
    pass


Action = Write | Read | Flush | Abort | BadMagic

lengths = st.one_of(
    st.integers(1, 8192),  # in memory
    st.integers(64 * 1024, 256 * 1024),  # through the kernel pipes
)


@st.composite
def writes(draw: st.DrawFn) -> Write:
    length = draw(lengths)
    return Write(draw(st.integers(0, MiB - length)), length, draw(st.booleans()))


@st.composite
def reads(draw: st.DrawFn) -> Read:
    length = draw(st.integers(1, 128 * 1024))
    return Read(draw(st.integers(0, MiB - length)), length)


@st.composite
def aborts(draw: st.DrawFn) -> Abort:
    length = draw(lengths.filter(lambda n: n > 1))
    offset = draw(st.integers(0, SIZE - length))
    sent = draw(st.integers(0, length - 1))
    how = draw(st.sampled_from(["eof", "eof", "rst", "rst", "stall"]))
    return Abort(offset, length, sent, how)


actions = st.one_of(
    writes(),
    writes(),
    reads(),
    st.just(Flush()),
    aborts(),
    st.just(BadMagic()),
)
plans = st.lists(st.lists(actions, min_size=1, max_size=6), min_size=2, max_size=3).filter(
    lambda p: sum(isinstance(a, Abort) and a.how == "stall" for c in p for a in c) <= 2
)
# meanwhile on the secondary's read-only export: refused writes, aborted payloads
secondary_plans = st.lists(
    st.one_of(writes(), aborts().filter(lambda a: a.how != "stall")), max_size=3
)


# ------------------------------------------------------------------ one connection
class Connection:
    """Runs one connection's actions; records acknowledged writes in `model`."""

    def __init__(
        self, port: int, index: int, example: int, model: bytearray, *, read_only: bool = False
    ) -> None:
        self.read_only = read_only  # the secondary's export: every write is refused
        self.port = port
        self.index = index
        self.base = index * MiB
        self.example = example
        self.model = model  # only this connection's MiB is touched by it
        self.sock: socket.socket | None = None
        self.handle = 0
        self.failure: BaseException | None = None

    def _sock(self) -> socket.socket:
        if self.sock is None:
            self.sock = connect(self.port)
        return self.sock

    def _drop(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def tag(self, seq: int, kind: str) -> bytes:
        return f"<{kind} e{self.example} c{self.index} n{seq}>".encode()

    def run(self, plan: list[Action]) -> None:
        try:
            for seq, action in enumerate(plan):
                self.step(seq, action)
            if self.sock is not None:
                self.sock.sendall(header(CMD_DISC, 0, 0, 0))
        except BaseException as exc:
            self.failure = exc
        finally:
            self._drop()

    def step(self, seq: int, action: Action) -> None:
        self.handle += 1
        h = self.handle
        if isinstance(action, Write):
            data = (self.tag(seq, "w") * (action.length // 8 + 2))[: action.length]
            sock = self._sock()
            flags = FLAG_FUA if action.fua else 0
            sock.sendall(header(CMD_WRITE, h, self.base + action.at, action.length, flags) + data)
            if self.read_only:
                assert simple_reply(sock, h) == EPERM
                return
            assert simple_reply(sock, h) == 0
            self.model[self.base + action.at : self.base + action.at + action.length] = data
        elif isinstance(action, Read):
            sock = self._sock()
            sock.sendall(header(CMD_READ, h, self.base + action.at, action.length))
            assert simple_reply(sock, h) == 0
            got = recv_exact(sock, action.length)
            start = self.base + action.at
            assert got == self.model[start : start + action.length], "read saw foreign bytes"
        elif isinstance(action, Flush):
            sock = self._sock()
            sock.sendall(header(CMD_FLUSH, h, 0, 0))
            assert simple_reply(sock, h) == 0
        elif isinstance(action, BadMagic):
            sock = self._sock()
            sock.sendall(struct.pack(">IHHQQI", 0xBADC0FFE, 0, CMD_WRITE, h, 0, 4096))
            assert closed_by_server(sock, 5), "bad magic did not drop the connection"
            self._drop()
        else:
            self.abort(h, seq, action)

    def abort(self, h: int, seq: int, a: Abort) -> None:
        poison = (self.tag(seq, "ABORT") * (a.length // 8 + 2))[: a.sent]
        sock = self._sock()
        sock.sendall(header(CMD_WRITE, h, a.offset, a.length) + poison)
        if a.how == "rst":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif a.how == "eof":
            sock.shutdown(socket.SHUT_WR)
            assert closed_by_server(sock, 5)
        else:  # stall past the payload timeout: the server must hang up on us
            assert closed_by_server(sock, STALL + 5), "a stalled payload was not dropped"
        self._drop()


# ------------------------------------------------------------------ the property
def reset(port: int, model: bytearray) -> None:
    sock = connect(port)
    try:
        sock.sendall(header(CMD_WRITE_ZEROES, 1, 0, SIZE, FLAG_FUA))
        assert simple_reply(sock, 1) == 0
        sock.sendall(header(CMD_DISC, 2, 0, 0))
    finally:
        sock.close()
    model[:] = bytes(SIZE)


def test_no_connection_bytes_reach_another_connections_write(processes: Start) -> None:
    timeout = ("--nbd-payload-timeout", f"{STALL}s")
    b = processes("b", "secondary", "sync", size="4MiB", extra=timeout)
    a = processes("a", "primary", "sync", peer=b.listen, size="4MiB", extra=timeout)
    wait_until("initial sync", lambda: a.status()["connection"] == "Connected", 30)
    wait_until("b UpToDate", lambda: b.status()["disk"] == "UpToDate", 30)
    port = a.nbd[1]
    model = bytearray(SIZE)
    examples = [0]
    deadline = time.monotonic() + 50

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(plans, secondary_plans)
    def check(plan: list[list[Action]], on_secondary: list[Action]) -> None:
        if time.monotonic() > deadline:
            return  # bounded: the remaining examples pass without running
        examples[0] += 1
        reset(port, model)  # every example starts from a zeroed volume (shrinking needs it)
        conns = [Connection(port, i, examples[0], model) for i in range(len(plan))]
        conns.append(Connection(b.nbd[1], 3, examples[0], model, read_only=True))
        threads = [
            threading.Thread(target=c.run, args=(p,), daemon=True)
            for c, p in zip(conns, [*plan, on_secondary], strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
            assert not t.is_alive(), "a connection hung"
        for c in conns:
            if c.failure is not None:
                raise c.failure
        for side in (a, b):  # sync: every acknowledged write is on both disks
            content = side.backing.read_bytes()
            assert len(content) == SIZE
            if content != model:
                first = next(i for i in range(SIZE) if content[i] != model[i])
                raise AssertionError(
                    f"{side.label} differs from the acknowledged writes at {first}: "
                    f"{content[first : first + 24]!r} != {model[first : first + 24]!r}"
                )

    check()
    assert examples[0] >= 10, f"only {examples[0]} examples ran in the time bound"
    st_a = a.status()
    assert st_a["connection"] == "Connected" and st_a["role"] == "primary"
    # failover: the secondary's first writes as primary carry no stale aborted payload
    a.kill9()
    wait_until("b sees a gone", lambda: b.status()["connection"] != "Connected", 30)
    out = b.cli("promote", "--yes", "--control", str(b.control), "--force", "--accept-data-loss")
    assert out.returncode == 0, out.stderr
    after = Connection(b.nbd[1], 3, examples[0] + 1, model)
    after.run([Write(0, 256 * 1024, True), Write(300 * 1024, 4096, True), Read(0, 4096)])
    assert after.failure is None, after.failure
    assert b.backing.read_bytes() == model
