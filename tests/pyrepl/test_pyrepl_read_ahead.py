"""Reading through one buffer (frame_reader.py, nbd_inbox.py): fewer receives, the same
bytes. A header and a small payload come in one receive; frames queued behind are
served from the buffer; a large payload's bytes read ahead go first, in order."""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from drorch.replication.pyrepl import nbd_proto as nbd
from drorch.replication.pyrepl import wire
from drorch.replication.pyrepl.frame_reader import FrameReader, kernel_timeouts, send_timeout
from drorch.replication.pyrepl.nbd_inbox import READ_AHEAD, NbdInbox
from drorch.replication.pyrepl.pipes import PipePayload, PipePool
from drorch.replication.pyrepl.splice import Splicer
from drorch.replication.pyrepl.wire import FrameType


class CountingSocket:
    """A Stream that counts receives (the reader's whole point is to make fewer)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.receives = 0

    def recv_into(self, buffer: memoryview | bytearray, nbytes: int = 0, /) -> int:
        self.receives += 1
        return self.sock.recv_into(buffer, nbytes)

    def sendall(self, data: bytes, /) -> None:
        self.sock.sendall(data)

    def settimeout(self, value: float | None, /) -> None:
        self.sock.settimeout(value)

    def shutdown(self, how: int, /) -> None:
        self.sock.shutdown(how)

    def close(self) -> None:
        self.sock.close()


def data_frame(seq: int, payload: bytes) -> bytes:
    return wire.header(FrameType.DATA, seq=seq, offset=0, length=len(payload)) + payload


def test_a_small_frame_arrives_in_one_receive_and_its_followers_in_none(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = tcp_pair
    blocks = [os.urandom(4096) for _ in range(3)]
    a.sendall(b"".join(data_frame(i + 1, blk) for i, blk in enumerate(blocks)))
    counted = CountingSocket(b)
    reader = FrameReader(counted)
    got = []
    for _ in blocks:
        head = wire.parse_header(reader.take(wire.HEADER.size))
        got.append((head.seq, bytes(reader.take(head.length))))
    assert got == [(i + 1, blk) for i, blk in enumerate(blocks)]
    assert counted.receives <= 2  # the three frames fit the buffer: one receive, maybe two
    assert reader.buffered == 0


def test_a_frame_split_across_receives_and_a_compaction_keeps_every_byte(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = tcp_pair
    reader = FrameReader(b, capacity=64)
    stream = os.urandom(1000)
    done = threading.Thread(
        target=lambda: [a.sendall(stream[i : i + 7]) for i in range(0, 1000, 7)]
    )
    done.start()
    out = bytearray()
    while len(out) < 1000:
        out += reader.take(min(50, 1000 - len(out)))  # 50 of 64: forces compactions
    done.join()
    assert bytes(out) == stream


def test_a_large_payload_gets_the_bytes_read_ahead_first(
    tcp_pair: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    a, b = tcp_pair
    payload = os.urandom(256 * 1024)
    frame = data_frame(1, payload)
    a.sendall(frame[: 32 * 1024])  # the header and the start: in the socket before we read
    for _ in range(500):  # bounded: loopback delivers at once
        if (
            int.from_bytes(fcntl.ioctl(b.fileno(), termios.FIONREAD, bytes(4)), sys.byteorder)
            >= 32 * 1024
        ):
            break
        time.sleep(0.01)
    sender = threading.Thread(target=a.sendall, args=(frame[32 * 1024 :],))
    sender.start()
    reader = FrameReader(b, capacity=16 * 1024)
    head = wire.parse_header(reader.take(wire.HEADER.size))
    target = tmp_path / "disk"
    target.write_bytes(bytes(len(payload) + 4096))
    fd = os.open(target, os.O_RDWR)
    splicer = Splicer()
    try:
        ahead = reader.take_buffered(head.length)
        assert len(ahead) == 16 * 1024 - wire.HEADER.size  # read ahead: a buffer's worth
        splicer.socket_to_file(b.fileno(), fd, 4096, head.length, 5.0, read_ahead=ahead)
    finally:
        splicer.close()
        os.close(fd)
    sender.join()
    assert target.read_bytes()[4096:] == payload


def test_read_into_serves_a_payload_larger_than_the_buffer(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = tcp_pair
    payload = os.urandom(100_000)
    sender = threading.Thread(target=a.sendall, args=(data_frame(1, payload),))
    sender.start()
    reader = FrameReader(b, capacity=8192)
    head = wire.parse_header(reader.take(wire.HEADER.size))
    dest = bytearray(head.length)
    reader.read_into(memoryview(dest))
    sender.join()
    assert bytes(dest) == payload


def test_kernel_timeouts_raise_timeout_and_eof_stays_eof(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = tcp_pair
    kernel_timeouts(b, 0.2)
    assert b.gettimeout() is None  # blocking: no poll() before each call
    assert send_timeout(b) == pytest.approx(0.2)
    reader = FrameReader(b)
    with pytest.raises(TimeoutError):
        reader.take(wire.HEADER.size)
    a.close()
    with pytest.raises(EOFError):
        reader.take(wire.HEADER.size)


def write_request(handle: int, length: int) -> bytes:
    return nbd.REQUEST.pack(nbd.REQUEST_MAGIC, 0, nbd.Cmd.WRITE, handle, 0, length)


@pytest.mark.parametrize("length", [4096, READ_AHEAD, READ_AHEAD + 1, 64 * 1024, 1024 * 1024])
def test_nbd_payloads_of_every_size_come_out_whole_and_in_order(
    tcp_pair: tuple[socket.socket, socket.socket], length: int
) -> None:
    """In memory up to a pipe's threshold, then in a pipe with the read-ahead bytes in
    front; the next request's header, read ahead with them, is not lost."""
    a, b = tcp_pair
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 5, 0))
    pool = PipePool()
    first, second = os.urandom(length), os.urandom(4096)
    stream = write_request(1, length) + first + write_request(2, 4096) + second
    sender = threading.Thread(target=a.sendall, args=(stream,))
    sender.start()
    inbox = NbdInbox(b, pool, threading.Event(), 5.0)
    try:
        got = []
        for _ in range(2):
            req = nbd.parse_request(inbox.header())
            payload = inbox.payload(req.length)
            if isinstance(payload, PipePayload):
                data = payload.read_all()
                payload.release()
            else:
                data = bytes(payload)
            got.append((req.handle, data))
        sender.join()
        assert got == [(1, first), (2, second)]
        assert pool.open <= 2  # nothing leaked
    finally:
        pool.close()


def test_nbd_inbox_waits_idle_but_drops_a_stalled_request(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = tcp_pair
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 100_000))
    stop = threading.Event()
    inbox = NbdInbox(b, None, stop, 0.1)
    late = threading.Timer(0.35, a.sendall, args=(write_request(7, 4096)[:10],))
    late.start()  # idle past several timeouts, then half a header
    with pytest.raises(TimeoutError, match="10 of 28 bytes"):
        inbox.header()
    late.join()
