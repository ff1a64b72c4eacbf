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
