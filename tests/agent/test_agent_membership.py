"""Membership over real mutual TLS on loopback: pinned both ways, loss after
member_timeout, and a bad or impersonating frame closes only that connection."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drorch.agent.membership import Membership, Peer
from drorch.clock import SystemClock
from drorch.quorum.protocol import encode_object
from drorch.quorum.tls import client_context, generate_self_signed

HB, TIMEOUT = 0.1, 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    out = {}
    for node in ("a1", "b1", "evil"):
        cert, key, _ = generate_self_signed(node, tmp_path / node)
        out[node] = (cert, key)
    return out


def _until(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


@pytest.fixture
def pair(certs: dict[str, tuple[Path, Path]]) -> Iterator[tuple[Membership, Membership]]:
    ports = {"a1": _free_port(), "b1": _free_port()}
    sites = {"a1": "A", "b1": "B"}
    made = []
    for me, other in (("a1", "b1"), ("b1", "a1")):
        m = Membership(
            cluster="c",
            me=me,
            listen=("127.0.0.1", ports[me]),
            cert=certs[me][0],
            key=certs[me][1],
            peers=[Peer(other, sites[other], "127.0.0.1", ports[other], certs[other][0])],
            heartbeat=HB,
            member_timeout=TIMEOUT,
            clock=SystemClock(),
        )
        made.append(m)
    for m in made:
        m.start()
    yield made[0], made[1]
    for m in made:
        m.stop()


def test_members_see_each_other_and_lose_a_silent_one(pair: tuple[Membership, Membership]) -> None:
    a, b = pair
    assert _until(lambda: a.table.members() == ("a1", "b1") and b.table.members() == ("a1", "b1"))
    b.block("a1")  # b stops heartbeating to a: a loses b; b still hears a
    assert _until(lambda: a.table.members() == ("a1",), timeout=TIMEOUT + 2)
    assert b.table.members() == ("a1", "b1")
    b.block("a1", False)
    assert _until(lambda: a.table.members() == ("a1", "b1"))


def _raw_tls(port: int, cert: Path, key: Path, server_cert: Path) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=2)
    return client_context(cert, key, server_cert).wrap_socket(raw)


def test_unpinned_certificate_refused(
    pair: tuple[Membership, Membership], certs: dict[str, tuple[Path, Path]]
) -> None:
    a, _ = pair
    port = a.address[1]
    raw = socket.create_connection(("127.0.0.1", port), timeout=2)
    ctx = client_context(certs["evil"][0], certs["evil"][1], certs["a1"][0])
    conn: ssl.SSLSocket | None = None
    try:
        with pytest.raises((ssl.SSLError, OSError)):
            conn = ctx.wrap_socket(raw)
            conn.sendall(encode_object({"type": "hb", "cluster": "c", "node": "b1", "seq": 10**9}))
            # TLS 1.3: the server's refusal of our certificate shows on the first read
            assert conn.recv(1) == b""
            raise OSError("closed without a word")
    finally:
        (conn or raw).close()
    assert "evil" not in a.table.members()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "hb", "cluster": "c", "node": "a1", "seq": 10**9},  # b1's cert claiming a1
        {"type": "hb", "cluster": "other", "node": "b1", "seq": 10**9},
        {"type": "vote", "cluster": "c", "node": "b1", "seq": 10**9},
    ],
)
def test_bad_frames_close_only_that_connection(
    pair: tuple[Membership, Membership],
    certs: dict[str, tuple[Path, Path]],
    frame: dict[str, object],
) -> None:
    a, b = pair
    assert _until(lambda: a.table.members() == ("a1", "b1"))
    b.block("a1")  # only our hostile connection speaks for b1 now
    conn = _raw_tls(a.address[1], *certs["b1"], certs["a1"][0])
    try:
        conn.sendall(encode_object(frame))
        assert conn.recv(1) == b""
    finally:
        conn.close()
    assert a.bad_frames >= 1
    assert _until(lambda: a.table.members() == ("a1",), timeout=TIMEOUT + 2)
    b.block("a1", False)
    assert _until(lambda: a.table.members() == ("a1", "b1")), "the daemon stopped serving"
