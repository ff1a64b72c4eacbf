"""Membership over real mutual TLS on loopback: pinned both ways, loss after
member_timeout, and a bad or impersonating frame closes only that connection."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drorch.agent.membership import Membership, MemberTable, Peer
from drorch.clock import SystemClock
from drorch.quorum.protocol import encode_object
from drorch.quorum.tls import client_context, generate_self_signed, server_context, wrap_client
from drorch.testing.clock import FakeClock
from tests.ports import free_port
from tests.trickle import trickling

HB, TIMEOUT = 0.1, 0.5


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
    ports = {"a1": free_port(), "b1": free_port()}
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
    b.block("a1")  # b stops heartbeating to a: a loses b
    assert _until(lambda: a.table.members() == ("a1",), timeout=TIMEOUT + 2)
    # b still hears a, but a's beats now say a does not hear b: a one-way link is no
    # membership (else b counts 2 of 2 while a, alone, may take the witness's lease)
    assert _until(lambda: b.table.members() == ("b1",), timeout=TIMEOUT + 2)
    assert b.table.one_way() == ("a1",) and b.table.heard_from() == ("a1",)
    b.block("a1", False)
    assert _until(lambda: a.table.members() == ("a1", "b1") and b.table.members() == ("a1", "b1"))


def test_a_peer_counts_only_while_its_beats_say_it_hears_this_node() -> None:
    clock = FakeClock()
    table = MemberTable("a1", member_timeout=2.0, clock=clock)
    table.heard("b1", 0, hears_me=True)
    assert table.members() == ("a1", "b1")
    table.heard("b1", 1, hears_me=False)  # b1 stopped hearing a1
    assert table.members() == ("a1",) and table.one_way() == ("b1",)
    table.heard("b1", 2)  # a beat without `hears` (an older agent): taken as mutual
    assert table.members() == ("a1", "b1")
    clock.advance(2.5)
    assert table.members() == ("a1",) and table.heard_from() == ()


def _raw_tls(port: int, cert: Path, key: Path, server_cert: Path) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=2)
    return wrap_client(client_context(cert, key, server_cert), raw)


def test_unpinned_certificate_refused(
    pair: tuple[Membership, Membership], certs: dict[str, tuple[Path, Path]]
) -> None:
    a, _ = pair
    port = a.address[1]
    raw = socket.create_connection(("127.0.0.1", port), timeout=2)
    ctx = client_context(certs["evil"][0], certs["evil"][1], certs["a1"][0])
    # wrapped without the handshake, so the SSLSocket (which takes over raw's fd) exists
    # and is closed below even when the handshake fails; a failing wrap_socket() would
    # leave it to the garbage collector (a ResourceWarning at a random later moment)
    conn = ctx.wrap_socket(raw, do_handshake_on_connect=False)
    try:
        with pytest.raises((ssl.SSLError, OSError)):
            conn.do_handshake()
            conn.sendall(encode_object({"type": "hb", "cluster": "c", "node": "b1", "seq": 10**9}))
            # TLS 1.3: the server's refusal of our certificate shows on the first read
            assert conn.recv(1) == b""
            raise OSError("closed without a word")
    finally:
        conn.close()
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


def test_a_link_the_peer_closed_is_dialled_again(certs: dict[str, tuple[Path, Path]]) -> None:
    """The dialler only sends, so it never read the listener's close: when the link's
    far end went away without a reset reaching it (the lab's WAN proxy, a middlebox),
    it kept writing into a dead connection and the restarted peer never heard from it
    again. A link the listener closed is dialled again within a few heartbeats."""
    server = socket.create_server(("127.0.0.1", free_port()))
    server.settimeout(5)
    ctx = server_context(*certs["b1"], [certs["a1"][0]])
    a = Membership(
        cluster="c",
        me="a1",
        listen=("127.0.0.1", free_port()),
        cert=certs["a1"][0],
        key=certs["a1"][1],
        peers=[Peer("b1", "B", "127.0.0.1", server.getsockname()[1], certs["b1"][0])],
        heartbeat=HB,
        member_timeout=TIMEOUT,
        clock=SystemClock(),
    )
    a.start()
    try:
        with server:
            raw, _ = server.accept()
            first = ctx.wrap_socket(raw, server_side=True)
            assert first.recv(4096)  # a beat
            first.shutdown(socket.SHUT_WR)  # closed this way; still accepting a's bytes
            again, _ = server.accept()  # socket.timeout (5 s) when a1 never dials again
            with ctx.wrap_socket(again, server_side=True) as second:
                assert second.recv(4096)
            first.close()
    finally:
        a.stop()


def test_trickling_handshakes_do_not_lock_a_peer_out(pair: tuple[Membership, Membership]) -> None:
    """Attack: 20 clients each sending a ClientHello a byte a second (never tripping the
    5 s receive timeout) held every one of the 16 shared slots; after one link blip the
    peer's reconnect was closed at accept and `a` lost b1 from its members for as long
    as the trickle went on. A new handshake now evicts the oldest unfinished one, and
    authenticated peers do not compete with handshakes for slots."""
    import threading

    from drorch.agent import membership

    a, b = pair
    assert _until(lambda: a.table.members() == ("a1", "b1"))
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200)
    with trickling(a.address, membership.MAX_CONNECTIONS + 4, hello):
        time.sleep(1.5)
        b.block("a1")  # one link blip on b's side: its connection to a closes
        time.sleep(0.5)
        b.block("a1", False)
        time.sleep(3 * TIMEOUT + 2)
        assert a.table.members() == ("a1", "b1"), dict(a.table.last_heard())
        assert threading.active_count() < 60  # evicted handshakes end their threads
