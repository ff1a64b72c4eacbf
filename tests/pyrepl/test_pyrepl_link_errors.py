"""Bad traffic on the replication link and the control socket: that connection goes,
the daemon and its other connections stay."""

from __future__ import annotations

import contextlib
import json
import socket
import time

import pytest

from drorch.replication.base import DiskState, ReplicationError, Role
from drorch.replication.pyrepl import wire
from drorch.replication.pyrepl.control import ControlClient
from drorch.replication.pyrepl.handshake import SideView
from drorch.replication.pyrepl.meta import Generation
from drorch.replication.pyrepl.wire import FrameType
from tests.pyrepl.conftest import SIZE, Cluster, connected, wait_until
from tests.pyrepl.nbd_client import recv_exact
from tests.trickle import trickle_until_cut, trickling


def hello(name: str = "vol", node: str = "ffffffffffffffff", size: int = SIZE) -> bytes:
    view = SideView(
        name,
        node,
        size,
        65536,
        Role.PRIMARY,
        DiskState.UP_TO_DATE,
        Generation("feedfeedfeedfeed"),
        0,
    )
    bitmap = bytes((SIZE // 65536 + 7) // 8)
    return (
        wire.json_frame(FrameType.HELLO, view.as_dict())
        + wire.header(FrameType.BITMAP, length=len(bitmap))
        + bitmap
    )


def closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00" * 64,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        wire.header(FrameType.HELLO, length=5) + b"{nope",
        wire.header(FrameType.DATA, seq=1, length=4) + b"data",  # data before a handshake
    ],
)
def test_garbage_on_the_replication_port_drops_only_that_connection(
    cluster: Cluster, garbage: bytes
) -> None:
    a, b = cluster.pair()
    with socket.create_connection(b.listen, timeout=10) as s:
        with contextlib.suppress(OSError):  # b may already have hung up
            s.sendall(garbage)
            s.shutdown(socket.SHUT_WR)
        assert closed_by_peer(s)
    assert connected(a) and connected(b)
    with a.client() as nbd:
        nbd.write(0, b"still replicating")
    assert b.content()[:17] == b"still replicating"


def test_an_intruder_hello_while_connected_is_rejected(cluster: Cluster) -> None:
    a, b = cluster.pair()
    with socket.create_connection(b.listen, timeout=10) as s:
        s.sendall(hello())
        head = wire.parse_header(recv_exact(s, wire.HEADER.size))
        body = json.loads(recv_exact(s, head.length))
        assert head.type == FrameType.REJECT and body["reason"] == "already connected"
    assert connected(a) and connected(b)


def test_a_different_volume_is_refused_at_handshake(cluster: Cluster) -> None:
    b = cluster.start("b", Role.SECONDARY)
    with socket.create_connection(b.listen, timeout=10) as s:
        s.sendall(hello(name="other"))
        head = wire.parse_header(recv_exact(s, wire.HEADER.size))
        body = json.loads(recv_exact(s, head.length))
        assert head.type == FrameType.REJECT and "volume other" in body["reason"]
        assert closed_by_peer(s)
    st = b.status()
    assert st["connection"] == "Connecting", "a stray peer does not make b give up"
    assert "refused a connection for volume other" in st["extra"]["last_error"]
    assert st["disk"] == "Inconsistent"


@pytest.mark.parametrize("flags", [0, wire.FLAG_DURABLE], ids=["async", "sync"])
@pytest.mark.parametrize(
    ("seq", "offset", "error"), [(5, 0, "out of order"), (1, SIZE - 2, "past the volume end")]
)
def test_a_peer_breaking_the_stream_order_or_the_bounds_is_dropped(
    cluster: Cluster, flags: int, seq: int, offset: int, error: str
) -> None:
    """A fake primary that skips a sequence number, or writes past the end: b must not
    apply it. Durable (sync) DATA frames take the receiver's short path: same checks."""
    b = cluster.start("b", Role.SECONDARY)
    with socket.create_connection(b.listen, timeout=10) as s:
        s.sendall(hello())
        for _ in range(2):  # b's HELLO and BITMAP
            head = wire.parse_header(recv_exact(s, wire.HEADER.size))
            recv_exact(s, head.length)
        wait_until("b connected", lambda: b.status()["connection"] != "Connecting")
        frame = wire.header(FrameType.DATA, seq=seq, offset=offset, length=4, flags=flags)
        s.sendall(frame + b"evil")
        wait_until("b dropped it", lambda: b.status()["connection"] == "Connecting")
    assert b"evil" not in b.content()
    assert error in b.status()["extra"]["last_error"]


def test_control_socket_garbage_gets_an_error_reply(cluster: Cluster) -> None:
    b = cluster.start("b", Role.SECONDARY)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(b.control))
        s.sendall(b"this is not json\n[1,2]\n" + json.dumps({"op": "nope"}).encode() + b"\n")
        lines = s.makefile("rb").readline(), None
        first = json.loads(lines[0])
        assert first["ok"] is False and first["error"]["type"] == "ReplicationError"
    with pytest.raises(ReplicationError, match="unknown control operation"):
        ControlClient(b.control).call("nope")
    assert b.status()["role"] == "secondary"  # still answering


@pytest.mark.parametrize("length", [4, 128 * 1024])  # small: buffered; large: spliced
def test_a_write_past_the_volume_end_is_refused(cluster: Cluster, length: int) -> None:
    b = cluster.start("b", Role.SECONDARY)
    with socket.create_connection(b.listen, timeout=10) as s:
        s.sendall(hello())
        for _ in range(2):
            head = wire.parse_header(recv_exact(s, wire.HEADER.size))
            recv_exact(s, head.length)
        wait_until("b connected", lambda: b.status()["connection"] != "Connecting")
        frame = wire.header(FrameType.DATA, seq=1, offset=SIZE - 2, length=length)
        with contextlib.suppress(OSError):
            s.sendall(frame + b"x" * length)
        wait_until("b dropped it", lambda: b.status()["connection"] == "Connecting")
    assert b.backing.stat().st_size == SIZE
    assert "past the volume end" in b.status()["extra"]["last_error"]


def test_a_hello_header_claiming_64_mib_is_refused_before_its_payload(cluster: Cluster) -> None:
    """28 unauthenticated bytes must not make the daemon allocate 64 MiB and wait for it
    (attack: eight such connections held 512 MiB of the secondary's memory)."""
    a, b = cluster.pair()
    with socket.create_connection(b.listen, timeout=10) as s:
        s.sendall(wire.header(FrameType.HELLO, length=wire.MAX_PAYLOAD))
        s.settimeout(2.0)  # well inside the 5 s a receive may take
        assert closed_by_peer(s)
    assert connected(a) and connected(b)


def test_a_bitmap_of_the_wrong_length_for_this_volume_is_refused(cluster: Cluster) -> None:
    a, b = cluster.pair()
    frames = hello()
    at = frames.index(wire.header(FrameType.BITMAP, length=(SIZE // 65536 + 7) // 8))
    with socket.create_connection(b.listen, timeout=10) as s:
        s.sendall(frames[:at] + wire.header(FrameType.BITMAP, length=wire.MAX_PAYLOAD))
        s.settimeout(2.0)
        assert closed_by_peer(s)
    assert connected(a) and connected(b)


def test_a_handshake_trickling_in_is_cut_at_the_deadline(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A byte every 0.3 s never trips the 5 s receive timeout; the whole handshake has
    a deadline (HANDSHAKE_DEADLINE) all the same."""
    from drorch.replication.pyrepl import link

    monkeypatch.setattr(link, "HANDSHAKE_DEADLINE", 1.0, raising=False)
    a, b = cluster.pair()
    with socket.create_connection(b.listen, timeout=10) as s:
        s.settimeout(0.3)
        cut = trickle_until_cut(s, hello()[:20])  # 6 s of trickle at most
        assert cut, "the trickling handshake was still open after 6 s"
    assert connected(a) and connected(b)


def test_an_nbd_handshake_trickling_in_is_cut_at_the_deadline(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HANDSHAKE_TIMEOUT bounds the whole NBD handshake, not each receive (attack: a byte
    every 10 s kept a handshake open for 70 s and more)."""
    from drorch.replication.pyrepl import nbd_server

    monkeypatch.setattr(nbd_server, "HANDSHAKE_TIMEOUT", 1.0)
    a, _b = cluster.pair()
    # flags, then an option header one byte at a time (never complete)
    trickle = b"\x00\x00\x00\x03" + b"IHAVEOPT" + bytes(8)
    with socket.create_connection(a.nbd, timeout=10) as s:
        recv_exact(s, 18)  # the greeting
        s.settimeout(0.3)
        cut = trickle_until_cut(s, trickle)  # 6 s of trickle at most
        assert cut, "the trickling NBD handshake was still open after 6 s"
    with a.client() as nbd:
        nbd.write(0, b"served")


def test_trickling_handshakes_do_not_lock_the_peer_out(cluster: Cluster) -> None:
    """Clients holding every replication-handshake slot (a byte a second: never past
    the 5 s receive timeout) must not keep the real peer from reconnecting: a new
    handshake evicts the oldest unfinished one."""
    from drorch.replication.pyrepl import link

    a, b = cluster.pair()
    with trickling(b.listen, link.MAX_HANDSHAKES + 2, hello()):
        time.sleep(1.0)
        a.call("disconnect")
        wait_until("a apart", lambda: a.status()["connection"] != "Connected")
        a.call("connect", wait=0)
        wait_until("reconnected", lambda: connected(a) and connected(b), timeout=10)
