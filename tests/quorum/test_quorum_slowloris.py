"""One bad client hurts no one else: slowloris, connection floods, pre-hello caps."""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.quorum.conftest import InProcessWitness, Pki, config_text, free_port

# the first bytes of a TLS record carrying a ClientHello, and then nothing more
PARTIAL_CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


@pytest.fixture(autouse=True)
def many_fds() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def slow_connections(
    stack: ExitStack, port: int, sources: list[str], per_source: int
) -> list[socket.socket]:
    socks = []
    for src in sources:
        for _ in range(per_source):
            s = stack.enter_context(socket.socket())
            s.bind((src, 0))
            s.connect(("127.0.0.1", port))
            s.sendall(PARTIAL_CLIENT_HELLO)
            socks.append(s)
    return socks


def wait_until(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def closed_by_server(s: socket.socket, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def witness_with(pki: Pki, tmp_path: object, extra: str = "") -> InProcessWitness:
    from pathlib import Path

    port = free_port()
    path = Path(str(tmp_path)) / "quorumd.yaml"
    path.write_text(config_text(pki, port, extra=extra))
    return InProcessWitness(pki, port, path, init=True)


@pytest.mark.slow
def test_slowloris_with_500_connections_does_not_stop_a_legitimate_client(
    pki: Pki, tmp_path: object
) -> None:
    w = witness_with(pki, tmp_path)
    server = w.quorum_server
    sources = [f"127.0.0.{i}" for i in range(10, 20)]
    try:
        with ExitStack() as stack, w.connect("c1", "A") as holder:
            assert holder.heartbeat(1, True, 1).granted
            opened = time.monotonic()
            slow = slow_connections(stack, w.port, sources, per_source=50)
            wait_until(lambda: len(server.unauthenticated) == 500)
            # a legitimate client still gets its vote, promptly
            started = time.monotonic()
            with w.connect("c1", "B") as b:
                v = b.heartbeat(1, True, 1)
            assert time.monotonic() - started < 2.0
            assert (v.granted, v.holder) == (False, "A")
            assert holder.heartbeat(2, True, 1).granted
            # a flood beyond the per-address cap (64) is refused at once ...
            flood = slow_connections(stack, w.port, ["127.0.0.10"], per_source=30)
            refused = sum(closed_by_server(s, 2.0) for s in flood[14:])
            assert refused == 16 and server.refused == 16
            # ... without touching the authenticated session
            assert holder.heartbeat(3, True, 1).granted
            # the handshake deadline (5 s) ends every slow connection, while the holder
            # keeps heartbeating (and keeps being granted) all along
            seq = 3
            deadline = time.monotonic() + 10
            while server.unauthenticated and time.monotonic() < deadline:
                seq += 1
                assert holder.heartbeat(seq, True, 1).granted
                time.sleep(0.1)
            assert not server.unauthenticated
            assert time.monotonic() - opened >= 5.0
            assert all(closed_by_server(s, 1.0) for s in slow)
            assert holder.heartbeat(seq + 1, True, 1).granted
    finally:
        w.stop()


def test_total_pre_hello_cap_evicts_the_oldest_never_a_session(pki: Pki, tmp_path: object) -> None:
    w = witness_with(pki, tmp_path, extra="max_unauthenticated: 100\n")
    server = w.quorum_server
    try:
        with ExitStack() as stack, w.connect("c1", "A") as holder:
            assert holder.heartbeat(1, True, 1).granted
            slow = slow_connections(stack, w.port, [f"127.0.1.{i}" for i in range(1, 6)], 30)
            wait_until(lambda: server.evicted >= 50)
            assert len(server.unauthenticated) <= 100
            # the oldest were closed to make room
            assert closed_by_server(slow[0], 2.0)
            # the authenticated session was never counted, never evicted
            assert holder.heartbeat(2, True, 1).granted
            assert len([s for s in server.sessions.values() if s.authenticated]) == 1
            with w.connect("c1", "B") as b:
                assert b.heartbeat(1, True, 1).holder == "A"
    finally:
        w.stop()
