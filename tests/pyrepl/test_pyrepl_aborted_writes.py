"""A large NBD write whose payload ends early (EOF, RST, timeout; on a primary or on a
secondary's read-only export) must not leave its bytes behind for anyone else's write.

The bug this guards against: a half-filled pipe went back to the pool as empty, and
every later large write from any client was shifted by the stale bytes, replicated to
the secondary and kept until restart."""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from drorch.replication.base import Role
from drorch.replication.pyrepl import nbd_proto as nbd
from drorch.replication.pyrepl.pipes import PipePayload, PipePool
from tests.pyrepl.conftest import Cluster, connected, wait_until
from tests.pyrepl.nbd_client import NbdClient

BIG = 64 * 1024
SENT = 1000


def _abort(host: str, port: int, how: str) -> None:
    """Start a 64 KiB WRITE, send 1000 payload bytes of 0xEE, then end it `how`."""
    c = NbdClient(host, port, "vol")
    header = struct.pack(">IHHQQI", nbd.REQUEST_MAGIC, 0, nbd.Cmd.WRITE, 1, 0, BIG)
    c.sock.sendall(header + b"\xee" * SENT)
    time.sleep(0.1)  # let the server splice the partial payload in
    if how == "rst":
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.sock.close()
    elif how == "eof":
        c.sock.shutdown(socket.SHUT_WR)
        c.sock.settimeout(5)
        try:
            while c.sock.recv(4096):
                pass
        except OSError:
            pass
        c.sock.close()
    else:  # "timeout": stay silent until the server gives up on us, then go
        time.sleep(0.5)
        c.sock.close()


@pytest.mark.parametrize("how", ["eof", "rst", "timeout"])
def test_aborted_write_leaves_no_bytes_behind(cluster: Cluster, how: str) -> None:
    a, b = cluster.pair()
    host, port = a.nbd
    for _ in range(3):
        _abort(host, port, how)
    data = os.urandom(BIG)
    with a.client() as c:
        c.write(BIG, data, fua=True)
        assert c.read(BIG, BIG) == data
    wait_until("replicated", lambda: connected(a))
    assert a.content()[BIG : 2 * BIG] == data
    assert b.content()[BIG : 2 * BIG] == data, "the secondary got shifted bytes"
    assert b"\xee" * 16 not in a.content()


def test_aborted_write_on_secondary_export_then_failover(cluster: Cluster) -> None:
    a, b = cluster.pair()
    host, port = b.nbd
    for _ in range(3):
        _abort(host, port, "eof")  # read-only export: refused, but its payload is read
    cluster.stop(a)
    wait_until("b sees the link down", lambda: b.status()["connection"] != "Connected")
    b.call("promote", epoch=b.status()["epoch"] + 1, force=True, accept_data_loss=True)
    data = os.urandom(BIG)
    with b.client() as c:
        c.write(0, data, fua=True)
        assert c.read(0, BIG) == data
    assert b.content()[:BIG] == data


def test_pool_never_reuses_a_partly_filled_pipe() -> None:
    pool = PipePool()
    srv = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(srv.getsockname())
    b, _ = srv.accept()
    srv.close()
    try:
        a.sendall(b"x" * SENT)
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(EOFError):
            PipePayload.from_socket(pool, b, BIG)
        pipe = pool.get()
        os.set_blocking(pipe.r, False)
        with pytest.raises(BlockingIOError):
            os.read(pipe.r, 1)  # the pipe we got back is empty
        pool.put(pipe, empty=True)
    finally:
        a.close()
        b.close()
        pool.close()


@pytest.mark.parametrize(("length", "sent"), [(BIG, SENT), (4096, 100), (BIG, 0)])
def test_a_client_stalled_mid_request_is_dropped_alone(
    cluster: Cluster, length: int, sent: int
) -> None:
    """Past the payload timeout a half-sent request drops its own connection (piped and
    in-memory payloads); an idle client between requests is kept; nothing is written."""
    a = cluster.start("a", Role.PRIMARY, nbd_payload_timeout=0.3)
    idle = NbdClient(*a.nbd, "vol")
    staller = NbdClient(*a.nbd, "vol")
    header = struct.pack(">IHHQQI", nbd.REQUEST_MAGIC, 0, nbd.Cmd.WRITE, 1, 0, length)
    staller.sock.sendall(header + b"\xee" * sent)
    staller.sock.settimeout(5)
    started = time.monotonic()
    assert staller.sock.recv(16) == b""  # dropped, no reply
    assert time.monotonic() - started < 4
    staller.sock.close()
    time.sleep(0.4)  # the idle client has now been silent past the timeout too
    idle.write(length, b"\x42" * length)
    assert idle.read(0, length + 16) == bytes(length) + b"\x42" * 16
    idle.close()
    assert a.daemon.nbd is not None and a.daemon.nbd.stalled_requests == 1
    assert b"\xee" not in a.content()


def test_a_half_sent_request_header_is_a_stall_too(cluster: Cluster) -> None:
    a = cluster.start("a", Role.PRIMARY, nbd_payload_timeout=0.3)
    with NbdClient(*a.nbd, "vol") as c:
        c.sock.sendall(struct.pack(">IHH", nbd.REQUEST_MAGIC, 0, nbd.Cmd.READ))
        c.sock.settimeout(5)
        assert c.sock.recv(16) == b""
    assert a.daemon.nbd is not None and a.daemon.nbd.stalled_requests == 1
