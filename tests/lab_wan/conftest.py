"""A real TCP echo server on loopback and a WAN proxy in front of it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drorch.lab.wan import Impairment, WanLink, WanState, WanStateFile
from drorch.lab.wan_proxy import ProxyThread


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EchoServer:
    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


class Wan:
    """The proxy (thread) with one link `A-B:echo` in front of the echo server."""

    def __init__(self, root: Path, echo: EchoServer) -> None:
        self.file = WanStateFile(root / "wan.json")
        self.link = WanLink("A-B:echo", "A-B", ("127.0.0.1", free_port()), ("127.0.0.1", echo.port))
        self.file.write(WanState((self.link,)))
        self.thread = ProxyThread(self.file, seed=1).start()

    def set(self, state: WanState, timeout: float = 10.0) -> None:
        version = self.file.write(state)
        for _ in range(int(timeout / 0.01)):  # the proxy acknowledges what it applied
            if self.file.applied() == version:
                return
            time.sleep(0.01)
        raise AssertionError(f"the proxy did not apply {version} in {timeout} s")

    def impair(self, **kwargs: float | str) -> None:
        self.set(WanState((self.link,), Impairment(**kwargs)))  # type: ignore[arg-type]

    def connect(self, timeout: float = 5.0) -> socket.socket:
        s = socket.create_connection(self.link.listen, timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s


def round_trip(sock: socket.socket, payload: bytes = b"x" * 64) -> float:
    start = time.monotonic()
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed")
        got += chunk
    assert got == payload
    return time.monotonic() - start


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def wan(tmp_path: Path, echo: EchoServer) -> Iterator[Wan]:
    w = Wan(tmp_path, echo)
    yield w
    w.thread.stop()
