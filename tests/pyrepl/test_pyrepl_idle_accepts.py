"""The replication link's and the control socket's accept paths against connections that
connect and then send nothing (the hole the NBD export had, issue 10)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from drorch.replication.base import Role
from drorch.replication.pyrepl import control
from drorch.replication.pyrepl.control import MAX_CLIENTS, ControlClient, ControlUnreachable
from drorch.replication.pyrepl.link import MAX_HANDSHAKES
from tests.pyrepl.conftest import Cluster, connected, wait_until


@contextlib.contextmanager
def silent(connect: object, count: int) -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(connect())  # type: ignore[operator]
        yield socks
    finally:
        for s in socks:
            s.close()


def unix(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def test_silent_control_connections_do_not_lock_the_operator_out(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: 40 connections to the control socket, never a byte: `drorch repl status`
    got a broken pipe for as long as they stayed."""
    monkeypatch.setattr(control, "REQUEST_DEADLINE", 1.0, raising=False)
    a = cluster.start("a", Role.PRIMARY, mode="async")
    with silent(lambda: unix(str(a.control)), MAX_CLIENTS + 8):

        def answers() -> bool:
            try:
                return bool(ControlClient(a.control, timeout=2).call("status"))
            except ControlUnreachable:  # every slot still held
                return False

        wait_until("the control socket answers again", answers, timeout=10)


def test_silent_connections_to_the_link_port_do_not_keep_the_peer_out(cluster: Cluster) -> None:
    b = cluster.start("b", Role.SECONDARY, mode="async")
    with silent(lambda: socket.create_connection(b.listen, timeout=5), 4 * MAX_HANDSHAKES):
        a = cluster.start("a", Role.PRIMARY, mode="async", peer=b.listen)
        wait_until("the peer connects and syncs", lambda: connected(a) and connected(b))
