"""The NBD export's connection slots against real clients on loopback (issue 10).

Attack from outside: 64 clients finished NBD_OPT_GO and then sent nothing; every slot
was held for as long as they liked, and nbdinfo and qemu-io (a QEMU reconnecting after
a blip) were cut before the handshake. Now a newcomer takes the slot of the connection
idle the longest (nothing in flight, idle at least `nbd_idle_evict`), or is refused with
a reason; an idle client is never closed while slots are free."""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import pytest

from drorch.replication.base import Role
from drorch.replication.pyrepl import nbd_proto as nbd
from drorch.replication.pyrepl.nbd_slots import MAX_CLIENTS, Held, decide_slot
from tests.pyrepl.conftest import Cluster, Side, wait_until
from tests.pyrepl.nbd_client import NbdClient, recv_exact

IDLE_EVICT = 1.0


def go(address: tuple[str, int]) -> socket.socket:
    """A raw client through NBD_OPT_GO into transmission, then left silent."""
    s = socket.create_connection(address, timeout=5)
    try:
        assert recv_exact(s, 18)[:8] == b"NBDMAGIC"
        s.sendall(struct.pack(">I", nbd.FLAG_FIXED_NEWSTYLE | nbd.FLAG_NO_ZEROES))
        data = struct.pack(">I", 3) + b"vol" + struct.pack(">H", 0)
        s.sendall(struct.pack(">QII", nbd.IHAVEOPT, nbd.Opt.GO, len(data)) + data)
        while True:
            _m, _o, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
            recv_exact(s, length)
            assert not rtype & (1 << 31), f"GO refused ({rtype:#x})"
            if rtype == nbd.REP_ACK:
                return s
    except BaseException:
        s.close()
        raise


@contextlib.contextmanager
def idle_clients(address: tuple[str, int], count: int) -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(go(address))
        yield socks
    finally:
        for s in socks:
            s.close()


def closed_by_server(s: socket.socket) -> bool:
    s.settimeout(0.0)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def uri(side: Side) -> str:
    host, port = side.nbd
    return f"nbd://{host}:{port}/vol"


@pytest.fixture
def primary(cluster: Cluster) -> Side:
    return cluster.start("a", Role.PRIMARY, mode="async", nbd_idle_evict=IDLE_EVICT)


def test_idle_clients_on_every_slot_do_not_lock_qemu_io_out(primary: Side) -> None:
    with idle_clients(primary.nbd, MAX_CLIENTS) as held:
        time.sleep(IDLE_EVICT + 0.2)
        out = run(
            "qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 64k", "-c", "read -P 0x5a 0 64k",
            uri(primary),
        )  # fmt: skip
        assert out.returncode == 0 and "Pattern verification failed" not in out.stdout, out
        # qemu-io took the slot of the connection idle the longest, and only that one
        wait_until("the oldest idle connection closed", lambda: closed_by_server(held[0]))
        assert not any(closed_by_server(s) for s in held[1:])
        # qemu-io has gone: its slot is free again, nobody else is closed for nbdinfo
        info = run("nbdinfo", uri(primary))
        assert info.returncode == 0, info.stderr
        assert not any(closed_by_server(s) for s in held[1:])
    assert primary.daemon.nbd is not None and primary.daemon.nbd.slots.evicted == 1


def test_a_newcomer_is_refused_with_a_reason_while_every_slot_is_in_use(
    primary: Side,
) -> None:
    with idle_clients(primary.nbd, MAX_CLIENTS) as held:
        out = run("qemu-io", "-f", "raw", "-r", "-c", "read 0 4k", uri(primary))
        assert out.returncode != 0
        assert f"all {MAX_CLIENTS} NBD connection slots are in use" in out.stderr, out.stderr
        assert "none has been idle" in out.stderr
        assert not any(closed_by_server(s) for s in held)


def test_a_connection_with_a_request_begun_is_never_closed_for_a_newcomer(
    primary: Side,
) -> None:
    with idle_clients(primary.nbd, MAX_CLIENTS) as held:
        header = struct.pack(">IHHQQI", nbd.REQUEST_MAGIC, 0, nbd.Cmd.READ, 1, 0, 4096)
        for s in held:
            s.sendall(header[:10])  # a request begun: in flight from its first byte
        time.sleep(IDLE_EVICT + 0.2)
        out = run("qemu-io", "-f", "raw", "-r", "-c", "read 0 4k", uri(primary))
        assert out.returncode != 0 and "with requests in flight" in out.stderr, out.stderr
        # the one begun goes on: its reply arrives once the rest of the header does
        held[0].sendall(header[10:])
        held[0].settimeout(5)
        magic, error, handle = struct.unpack(">IIQ", recv_exact(held[0], 16))
        assert (magic, error, handle) == (nbd.SIMPLE_REPLY_MAGIC, 0, 1)
        assert len(recv_exact(held[0], 4096)) == 4096
        assert not any(closed_by_server(s) for s in held[1:])


def test_an_idle_client_is_never_closed_while_slots_are_free(primary: Side) -> None:
    """What QEMU does between guest I/Os: silence, then a request on the same socket."""
    host, port = primary.nbd
    with NbdClient(host, port, "vol") as quiet:
        quiet.write(0, b"q" * 4096)
        with idle_clients(primary.nbd, MAX_CLIENTS - 1):
            time.sleep(3 * IDLE_EVICT)
            assert quiet.read(0, 4096) == b"q" * 4096


@pytest.mark.parametrize(
    ("held", "admit", "evict", "reason"),
    [
        ([], True, None, "1 of 2 slots in use"),
        ([Held(1, "h1", False, 0.0)], True, None, "2 of 2 slots in use"),
        (
            [Held(1, "h1", False, 50.0), Held(2, "h2", False, 10.0)],
            True,
            2,
            "closed the connection from h2 (idle 90 s, nothing in flight) to admit new",
        ),
        (
            [Held(1, "h1", True, 0.0), Held(2, "h2", False, 50.0)],
            True,
            2,
            "closed the connection from h2 (idle 50 s",
        ),
        (
            [Held(1, "h1", True, 0.0), Held(2, "h2", False, 95.0)],
            False,
            None,
            "all 2 NBD connection slots are in use (1 with requests in flight) and none has"
            " been idle for 10 s",
        ),
    ],
)
def test_decide_slot(held: list[Held], admit: bool, evict: int | None, reason: str) -> None:
    d = decide_slot(held, "new", 100.0, limit=2, evict_idle=10.0)
    assert (d.admit, d.evict) == (admit, evict)
    assert reason in d.reason
