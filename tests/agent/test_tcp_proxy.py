"""The cuttable TCP proxy the real-process scenarios partition with: it forwards both
ways, `cut()` resets open connections and refuses new ones (or, in drop mode, swallows
everything silently), `heal()` forwards again."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from drorch.testing.tcp_proxy import TcpProxy, _Pair


@pytest.fixture
def echo() -> Iterator[int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield int(srv.getsockname()[1])
    stop.set()
    t.join(2)
    srv.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        for _ in range(1000):  # bounded
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            conn.sendall(data)


def _talk(port: int, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(payload)
        return s.recv(4096)


def test_forwards_cuts_with_reset_and_heals(echo: int) -> None:
    proxy = TcpProxy(("127.0.0.1", 0), ("127.0.0.1", echo)).start()
    try:
        assert _talk(proxy.port) == b"ping"
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        held.sendall(b"a")
        assert held.recv(10) == b"a"
        proxy.cut()
        with pytest.raises(OSError):  # reset (or closed) both ways
            held.sendall(b"b")
            if not held.recv(10):
                raise ConnectionResetError("closed")
        held.close()
        with pytest.raises(OSError):
            if not _talk(proxy.port):
                raise ConnectionResetError("closed")
        proxy.heal()
        assert _talk(proxy.port, b"again") == b"again"
    finally:
        proxy.close()


def test_drop_mode_swallows_silently(echo: int) -> None:
    proxy = TcpProxy(("127.0.0.1", 0), ("127.0.0.1", echo), mode="drop").start()
    try:
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        proxy.cut()
        held.settimeout(0.5)
        held.sendall(b"lost")
        with pytest.raises(TimeoutError):
            held.recv(10)
        held.close()
    finally:
        proxy.close()


def test_bad_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode is reset or drop"):
        TcpProxy(("127.0.0.1", 0), ("127.0.0.1", 1), mode="flaky")


def test_a_pair_cut_before_its_pump_thread_began_ends_quietly(echo: int) -> None:
    """`cut()` in reset mode can close a new pair between its accept and its pump
    thread's first step; the thread then ended with an unhandled `Bad file descriptor`
    (a CI failure of a real-process scenario that had itself passed)."""
    proxy = TcpProxy(("127.0.0.1", 0), ("127.0.0.1", echo), mode="reset")
    try:
        a, b = socket.socketpair()
        pair = _Pair(a, b)
        with proxy._lock:
            proxy._pairs.append(pair)
        proxy.cut()  # closes (resets) both sockets of the pair
        assert a.fileno() == -1 and b.fileno() == -1
        proxy._pump(pair)  # the pump thread's body, run after the cut: returns, raises nothing
        assert not pair.alive and pair not in proxy._pairs
    finally:
        proxy.close()
