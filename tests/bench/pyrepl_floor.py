"""The least a replicated sync write can cost on this machine, measured without pyrepl.

A forked child plays the secondary: it receives a 4 KiB frame over loopback TCP, writes
it with RWF_DSYNC and sends an 8-byte acknowledgement. The parent plays the primary:
it sends the frame, writes and fdatasyncs its own copy meanwhile, then waits for the
acknowledgement. That is protocol C and nothing else (no NBD, no queue, no bitmap):
two processes, two files on the one disk, one round trip, two wake-ups. Timed from
"write in" to "durable on both sides", the same span pyrepl reports as
`extra.sync_write_latency_us`.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import statistics
import struct
import time
from pathlib import Path

BLOCK = 4096
FRAME = struct.Struct(">Q")  # offset


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _secondary(port: int, path: str, count: int) -> None:
    fd = os.open(path, os.O_RDWR)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            frame = _recv_exact(sock, FRAME.size + BLOCK)
            (offset,) = FRAME.unpack_from(frame)
            os.pwritev(fd, [frame[FRAME.size :]], offset, os.RWF_DSYNC)
            sock.sendall(frame[: FRAME.size])
    os.close(fd)


def protocol_c_floor(root: Path, root_b: Path | None = None, count: int = 400) -> float:
    """Median seconds of one minimal sync write (see the module docstring); the
    secondary's file in `root_b` when given (another disk)."""
    paths = [root / "floor-primary.img", (root_b or root) / "floor-secondary.img"]
    for p in paths:
        with open(p, "wb") as f:
            f.write(bytes(BLOCK * count))
            f.flush()
            os.fsync(f.fileno())
    srv = socket.create_server(("127.0.0.1", 0))
    child = multiprocessing.get_context("fork").Process(
        target=_secondary, args=(srv.getsockname()[1], str(paths[1]), count)
    )
    child.start()
    fd = os.open(paths[0], os.O_RDWR)
    samples = []
    try:
        conn, _ = srv.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            block = os.urandom(BLOCK)
            for i in range(count):
                offset = i * BLOCK
                start = time.perf_counter()
                conn.sendall(FRAME.pack(offset) + block)
                os.pwrite(fd, block, offset)
                os.fdatasync(fd)
                _recv_exact(conn, FRAME.size)
                samples.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        srv.close()
        child.join(60)
        if child.is_alive():
            child.kill()
            child.join(10)
        for p in paths:
            p.unlink()
    return statistics.median(samples)


MIB = 1024 * 1024


def _splice_in(sock_fd: int, pipe_w: int, n: int) -> None:
    while n:
        moved = os.splice(sock_fd, pipe_w, n)
        if moved == 0:
            raise EOFError
        n -= moved


def _splice_out(pipe_r: int, fd: int, n: int, offset: int | None = None) -> None:
    while n:
        moved = os.splice(pipe_r, fd, n, offset_dst=offset)
        if offset is not None:
            offset += moved
        n -= moved


def _pipe() -> tuple[int, int]:
    from drorch.replication.pyrepl.pipes import Pipe

    pipe = Pipe()
    return pipe.r, pipe.w


def _sink(listener: socket.socket, path: str, count: int) -> None:
    """The secondary of the shipping floor: socket -> pipe -> file, nothing else."""
    fd = os.open(path, os.O_RDWR)
    r, w = _pipe()
    sock, _ = listener.accept()
    with sock:
        for i in range(count):
            offset, left = (i * MIB) % (64 * MIB), MIB
            while left:  # in and out in turn: the pipe may fill up before 1 MiB
                moved = os.splice(sock.fileno(), w, left)
                if moved == 0:
                    raise EOFError
                _splice_out(r, fd, moved, offset)
                offset += moved
                left -= moved
    os.close(fd)


def _server(port: int, path: str, count: int, peer_port: int | None) -> None:
    """The primary: client socket -> pipe -> (tee -> peer socket) -> file."""
    from drorch.replication.pyrepl.pipes import _tee_call

    fd = os.open(path, os.O_RDWR)
    r, w = _pipe()
    r2, w2 = _pipe()
    peer = socket.create_connection(("127.0.0.1", peer_port)) if peer_port else None
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for i in range(count):
            _splice_in(sock.fileno(), w, MIB)
            if peer is not None:
                assert _tee_call(r, w2, MIB) == MIB
                _splice_out(r2, peer.fileno(), MIB)
            _splice_out(r, fd, MIB, (i * MIB) % (64 * MIB))
        sock.sendall(b"k")
    if peer is not None:
        peer.close()
    os.close(fd)


def shipping_floor(root: Path, count: int = 1024) -> tuple[float, float]:
    """MiB/s of 1 MiB writes from a client process into a server process's file, alone
    and shipping every byte to a third process's file (kernel pipes all the way: no
    Python buffer ever holds data). The ratio is the best async/standalone ratio this
    machine allows any replicator whose sites share its cores."""
    ctx = multiprocessing.get_context("fork")
    results = []
    for shipping in (False, True):
        paths = [root / "floor-a.img", root / "floor-b.img"]
        for p in paths:
            with open(p, "wb") as f:
                f.truncate(64 * MIB)
        os.sync()  # nobody pays for earlier writeback
        procs = []
        peer_port = None
        if shipping:
            peer_srv = socket.create_server(("127.0.0.1", 0))
            peer_port = peer_srv.getsockname()[1]
            procs.append(ctx.Process(target=_sink, args=(peer_srv, str(paths[1]), count)))
        srv = socket.create_server(("127.0.0.1", 0))
        procs.append(
            ctx.Process(
                target=_server, args=(srv.getsockname()[1], str(paths[0]), count, peer_port)
            )
        )
        for p in procs:
            p.start()
        if shipping:
            peer_srv.close()  # the sink (forked) holds its own copy and accepts the server
        conn, _ = srv.accept()
        data = os.urandom(MIB)
        start = time.perf_counter()
        with conn:
            for _ in range(count):
                conn.sendall(data)
            _recv_exact(conn, 1)
        results.append(count / (time.perf_counter() - start))
        srv.close()
        for p in procs:
            p.join(120)
        for p in paths:
            p.unlink()
        os.sync()
    return results[0], results[1]
