"""Load generator for bench_quorum: one process drives thousands of pinned-TLS quorum
sessions with non-blocking sockets on one epoll loop, heartbeating at 1 Hz.

A worker connects with a bounded number of handshakes in flight (so the daemon's pre-hello
caps are respected), spreads its heartbeats evenly over each second, and measures the
latency from sending a heartbeat to receiving its vote. Only votes whose heartbeat was sent
inside the measuring window (shared `Value`s, CLOCK_MONOTONIC is system-wide) count.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import json
import math
import selectors
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from drorch.quorum.protocol import Heartbeat, Hello, encode
from drorch.quorum.tls import client_context

HEADER = struct.Struct(">I")
CONNECTING, HANDSHAKE, WELCOME, READY, DEAD = range(5)
SLOTS = 100  # heartbeat bursts per second, evenly spread


@dataclass
class Target:
    cluster: str
    site: str
    cert: str
    key: str
    source: str  # source address inside 127.0.0.0/8


@dataclass
class WorkerResult:
    connected: int = 0
    connect_errors: int = 0
    dropped: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    unanswered: int = 0
    last_vote: dict[str, tuple[bool, int, str | None]] = field(default_factory=dict)
    connect_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class Conn:
    __slots__ = ("buf", "ctx", "idx", "key", "out", "sent", "seq", "sock", "stage", "target")

    def __init__(self, idx: int, target: Target, ctx: ssl.SSLContext) -> None:
        self.idx = idx
        self.target = target
        self.ctx = ctx
        self.stage = CONNECTING
        self.sock: Any = None
        self.buf = bytearray()
        self.out = b""
        self.seq = 0
        self.sent: dict[int, float] = {}
        self.key = f"{target.cluster}/{target.site}"


class Worker:
    def __init__(
        self,
        port: int,
        server_cert: str,
        targets: list[Target],
        window: Any,
        ready: Any,
        max_in_flight: int = 96,
    ) -> None:
        self.port = port
        self.window = window  # multiprocessing Array('d', [start, end]); 0 = not yet
        self.ready = ready  # multiprocessing Value('i'): sessions established, all workers
        self.max_in_flight = max_in_flight
        self.sel = selectors.DefaultSelector()
        self.result = WorkerResult()
        self.conns = [
            Conn(i, t, client_context(t.cert, t.key, server_cert)) for i, t in enumerate(targets)
        ]
        self.pending = list(reversed(self.conns))  # not yet started
        self.in_flight = 0
        self.schedule: list[tuple[float, int]] = []

    # --- connecting --------------------------------------------------------------------

    def _start_next(self) -> None:
        while self.pending and self.in_flight < self.max_in_flight:
            c = self.pending.pop()
            s = socket.socket()
            s.setblocking(False)
            s.bind((c.target.source, 0))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = s.connect_ex(("127.0.0.1", self.port))
            if rc not in (0, errno.EINPROGRESS):
                s.close()
                self._fail(c, f"connect: {errno.errorcode.get(rc, rc)}")
                continue
            c.sock = s
            self.in_flight += 1
            self.sel.register(s, selectors.EVENT_WRITE, c)

    def _fail(self, c: Conn, why: str) -> None:
        if c.stage == READY:
            self.result.dropped += 1
        else:
            self.result.connect_errors += 1
            if c.stage != DEAD and c.sock is not None:
                self.in_flight -= 1
        if len(self.result.errors) < 5:
            self.result.errors.append(f"{c.key}: {why}")
        if c.sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(c.sock)
            c.sock.close()
        c.stage = DEAD

    def _advance(self, c: Conn, mask: int) -> None:
        if c.stage == CONNECTING:
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(c, f"connect: {errno.errorcode.get(err, err)}")
                return
            self.sel.unregister(c.sock)
            c.sock = c.ctx.wrap_socket(c.sock, do_handshake_on_connect=False)
            c.stage = HANDSHAKE
            self.sel.register(c.sock, selectors.EVENT_READ, c)
        if c.stage == HANDSHAKE:
            try:
                c.sock.do_handshake()
            except ssl.SSLWantReadError:
                self.sel.modify(c.sock, selectors.EVENT_READ, c)
                return
            except ssl.SSLWantWriteError:
                self.sel.modify(c.sock, selectors.EVENT_WRITE, c)
                return
            except (ssl.SSLError, OSError) as exc:
                self._fail(c, f"handshake: {exc}")
                return
            self.sel.modify(c.sock, selectors.EVENT_READ, c)
            c.stage = WELCOME
            t = c.target
            self._send(c, encode(Hello(t.cluster, t.site, f"{t.cluster}-{t.site}-n1")))
            return
        if mask & selectors.EVENT_WRITE and c.out:
            self._send(c, b"")
        if mask & selectors.EVENT_READ:
            self._read(c)

    # --- traffic -----------------------------------------------------------------------

    def _send(self, c: Conn, frame: bytes) -> None:
        data = c.out + frame
        try:
            n = c.sock.send(data)
        except (ssl.SSLWantWriteError, BlockingIOError):
            n = 0
        except (ssl.SSLError, OSError) as exc:
            self._fail(c, f"send: {exc}")
            return
        had_output = bool(c.out)
        c.out = data[n:]
        if bool(c.out) != had_output or c.stage == WELCOME:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0)
            self.sel.modify(c.sock, events, c)

    def _read(self, c: Conn) -> None:
        while True:
            try:
                data = c.sock.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                break
            except (ssl.SSLError, OSError) as exc:
                self._fail(c, f"recv: {exc}")
                return
            if not data:
                self._fail(c, "closed by the witness")
                return
            c.buf += data
        now = time.monotonic()
        buf = c.buf
        while len(buf) >= 4:
            (n,) = HEADER.unpack_from(buf)
            if len(buf) < 4 + n:
                break
            msg = json.loads(bytes(buf[4 : 4 + n]))
            del buf[: 4 + n]
            self._message(c, msg, now)

    def _message(self, c: Conn, msg: dict[str, Any], now: float) -> None:
        kind = msg["type"]
        if kind == "welcome" and c.stage == WELCOME:
            c.stage = READY
            self.in_flight -= 1
            self.result.connected += 1
            with self.ready.get_lock():
                self.ready.value += 1
            # heartbeats go out in SLOTS bursts per second (fewer wake-ups on both sides)
            slot = (c.idx % SLOTS) / SLOTS
            heapq.heappush(self.schedule, (math.ceil(now) + slot, c.idx))
        elif kind == "vote":
            sent = c.sent.pop(msg["seq"], None)
            if sent is not None and self.window[0] and self.window[0] <= sent < self.window[1]:
                self.result.latencies_ms.append((now - sent) * 1000)
            self.result.last_vote[c.key] = (msg["granted"], msg["epoch"], msg["holder"])
        elif kind == "error":
            self._fail(c, f"error {msg.get('code')}: {msg.get('message')}")

    def _heartbeats(self, now: float) -> None:
        while self.schedule and self.schedule[0][0] <= now:
            due, idx = heapq.heappop(self.schedule)
            c = self.conns[idx]
            if c.stage != READY:
                continue
            c.seq += 1
            for old in [s for s in c.sent if s < c.seq - 5]:
                del c.sent[old]
                if self.window[0] and self.window[0] <= due < self.window[1]:
                    self.result.unanswered += 1
            c.sent[c.seq] = time.monotonic()
            self._send(c, encode(Heartbeat(c.seq, True, 1)))
            heapq.heappush(self.schedule, (max(due + 1.0, now), idx))

    def run(self, stop_after: float) -> WorkerResult:
        """Connect everything, then heartbeat until the window closed (or `stop_after`)."""
        started = time.monotonic()
        deadline = started + stop_after
        self._start_next()
        while time.monotonic() < deadline:
            end = self.window[1]
            if end and time.monotonic() > end + 1.5:
                break
            if not self.result.connect_seconds and not self.pending and self.in_flight == 0:
                self.result.connect_seconds = time.monotonic() - started
            now = time.monotonic()
            timeout = 0.05
            if self.schedule:
                timeout = max(0.0, min(0.05, self.schedule[0][0] - now))
            for key, mask in self.sel.select(timeout):
                self._advance(key.data, mask)
            self._start_next()
            self._heartbeats(time.monotonic())
        for c in self.conns:
            if c.sock is not None:
                c.sock.close()
        self.sel.close()
        return self.result
