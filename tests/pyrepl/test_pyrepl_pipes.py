"""Pipe payloads (pipes.py) and ack coalescing, on real sockets, pipes and files."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from drorch.replication.pyrepl import pipes, receiver, wire
from drorch.replication.pyrepl.pipes import PipePayload, PipePool, tee_or_copy
from drorch.replication.pyrepl.session import send_buffers
from drorch.replication.pyrepl.wire import FrameType
from tests.pyrepl.conftest import SIZE, Cluster, wait_until

MIB = 1024 * 1024


def send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    t = threading.Thread(target=sock.sendall, args=(data,))
    t.start()
    return t


def read_n(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, "peer closed early"
        out += chunk
    return bytes(out)


def test_tcp_payload_is_piped_teed_and_lands_identically(
    tcp_pair: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    a, b = tcp_pair
    pool = PipePool()
    data = os.urandom(MIB)
    t = send_in_background(a, data)
    payload = PipePayload.from_socket(pool, b, len(data))
    t.join()
    assert isinstance(payload, PipePayload) and len(payload) == MIB
    local, ship = tee_or_copy(payload)
    assert isinstance(ship, PipePayload) and ship is not local
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert isinstance(local, PipePayload)
        local.to_file(fd, 8192)
        local.release()
        assert os.pread(fd, MIB, 8192) == data
    finally:
        os.close(fd)
    # the teed copy goes to another socket, byte for byte
    a.settimeout(5)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(read_n(b, MIB)))
    reader.start()
    ship.to_socket(a.fileno())
    ship.release()
    reader.join(10)
    assert got == [data]
    assert pool.open == 2  # both pipes back in the pool, empty and reusable
    pool.close()
    assert pool.open == 0


def test_payload_in_many_small_socket_buffers_falls_back_to_memory() -> None:
    """A unix socket hands over small buffers, each taking a pipe slot: the pipe fills
    before 1 MiB is in it. Nothing may block; the payload arrives whole, in memory."""
    a, b = socket.socketpair()
    pool = PipePool()
    data = os.urandom(MIB)

    def in_small_pieces() -> None:  # 2048 buffers: more than the pipe has slots
        for at in range(0, len(data), 512):
            a.sendall(data[at : at + 512])

    try:
        t = threading.Thread(target=in_small_pieces)
        t.start()
        payload = PipePayload.from_socket(pool, b, len(data))
        t.join()
        assert isinstance(payload, bytearray)
        assert bytes(payload) == data
        assert pool.open == 1  # the pipe that overflowed was drained and pooled
    finally:
        a.close()
        b.close()


def test_tee_failure_degrades_to_one_copy_for_both(
    tcp_pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tcp_pair
    pool = PipePool()
    data = os.urandom(256 * 1024)
    send_in_background(a, data).join()
    payload = PipePayload.from_socket(pool, b, len(data))
    assert isinstance(payload, PipePayload)

    def no_room(fd_in: int, fd_out: int, length: int) -> int:
        raise BlockingIOError(11, "pipe full")

    monkeypatch.setattr(pipes, "_tee_call", no_room)
    local, ship = tee_or_copy(payload)
    assert local is ship and local == data


def test_unconsumed_payload_closes_its_pipe(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = tcp_pair
    pool = PipePool()
    send_in_background(a, bytes(128 * 1024)).join()
    payload = PipePayload.from_socket(pool, b, 128 * 1024)
    assert isinstance(payload, PipePayload)
    assert pool.open == 1
    payload.release()
    payload.release()  # idempotent
    assert pool.open == 0  # a pipe with data left in it is never reused


def test_send_buffers_mixes_memory_and_pipes_in_order(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = tcp_pair
    pool = PipePool()
    body = os.urandom(512 * 1024)
    # a TCP source so the payload really is piped
    srv = socket.create_server(("127.0.0.1", 0))
    feed = socket.create_connection(srv.getsockname())
    sink, _ = srv.accept()
    srv.close()
    try:
        send_in_background(feed, body).join()
        payload = PipePayload.from_socket(pool, sink, len(body))
        assert isinstance(payload, PipePayload)
        got: list[bytes] = []
        total = len(body) + 10
        reader = threading.Thread(target=lambda: got.append(read_n(b, total)))
        reader.start()
        assert send_buffers(a, [b"head:", payload, b"tail!"]) == total
        reader.join(10)
        assert got == [b"head:" + body + b"tail!"]
        assert pool.open == 1
    finally:
        for s in (feed, sink):
            s.close()


def test_send_buffers_releases_pipes_when_the_send_fails(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = tcp_pair
    pool = PipePool()
    payloads = []
    for _ in range(2):
        send_in_background(b, bytes(128 * 1024)).join()
        p = PipePayload.from_socket(pool, a, 128 * 1024)
        assert isinstance(p, PipePayload)
        payloads.append(p)
    dead_a, dead_b = socket.socketpair()
    dead_b.close()
    with pytest.raises(OSError):
        send_buffers(dead_a, [b"x" * 4096, payloads[0], payloads[1]])
    dead_a.close()
    assert pool.open == 0  # nothing leaked: unsent pipes are closed


class _AckProbe:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.engine = SimpleNamespace()
        self.acks: list[int] = []

    def send_now(self, frame: bytes) -> None:
        self.acks.append(wire.parse_header(frame).seq)


def test_acks_coalesce_only_for_writes_nobody_waits_for() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe: Any = _AckProbe(b)
        rx = receiver.Receiver(probe)
        assert rx._splicer is not None

        def data(seq: int, flags: int = 0) -> wire.Header:
            return wire.parse_header(
                wire.header(FrameType.DATA, seq=seq, offset=0, length=4096, flags=flags)
            )

        a.sendall(b"\0" * wire.HEADER.size)  # "the next frame is already waiting"
        rx._acknowledge(data(1))
        assert probe.acks == []  # deferred: the next frame's ack will cover it
        rx._acknowledge(data(2, wire.FLAG_DURABLE))
        assert probe.acks == [2]  # a sync writer waits for this one: at once
        b.recv(wire.HEADER.size)
        rx._acknowledge(data(3))
        assert probe.acks == [2, 3]  # nothing waiting behind it: ack now
        a.sendall(b"\0" * wire.HEADER.size)
        for seq in range(4, 4 + receiver.ACK_BATCH + 1):
            rx._acknowledge(data(seq))
        # bounded: after ACK_BATCH deferrals it acknowledges anyway
        assert probe.acks == [2, 3, 4 + receiver.ACK_BATCH]
        rx._splicer.close()
    finally:
        a.close()
        b.close()


def test_async_large_writes_replicate_exactly_and_leak_no_pipes(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="async")
    blocks = [os.urandom(MIB) for _ in range(3)]
    with a.client() as nbd:
        for i in range(24):  # overlapping 1 MiB writes: the last one must win on both
            nbd.write((i * 512 * 1024) % (SIZE - MIB), blocks[i % 3])
        nbd.flush()
    nbd_server = a.daemon.nbd
    assert nbd_server is not None
    assert nbd_server.piped_writes >= 24
    wait_until("peer caught up", lambda: a.status()["lag_bytes"] == 0)
    assert a.content() == b.content()
    assert nbd_server.pipes.open <= pipes.MAX_IDLE


def test_send_buffers_goes_on_after_partial_sends_and_past_iov_max(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    """Many buffers (more than one sendmsg takes) through a small send buffer that a
    slow reader empties: every sendmsg after the first is partial, and the bytes must
    still arrive once each, in order."""
    a, b = tcp_pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    a.settimeout(20)  # a sender that lost count blocks: fail, do not hang
    parts = [os.urandom(1 + i % 197) for i in range(700)]  # IOV_MAX is 512
    total = sum(map(len, parts))
    got: list[bytes] = []

    def slow_reader() -> None:
        out = bytearray()
        while len(out) < total:
            chunk = b.recv(3000)
            assert chunk
            out += chunk
            time.sleep(0.0002)
        got.append(bytes(out))

    reader = threading.Thread(target=slow_reader)
    reader.start()
    assert send_buffers(a, parts) == total
    reader.join(30)
    assert got == [b"".join(parts)]
