"""Slow-client attacks on a server's handshake: clients that send their first bytes a
byte at a time, never slowly enough to trip a per-receive timeout.

`trickle_until_cut` is one such client on an open socket; `trickling` keeps a crowd of
them on every handshake slot of a listener while the test runs."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator


def trickle_until_cut(s: socket.socket, data: bytes) -> bool:
    """Send `data` a byte each receive timeout of `s` (set it first); True as soon as the
    server closes the connection, False if it took every byte without doing so."""
    for byte in data:
        try:
            s.sendall(bytes([byte]))
            if s.recv(1) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def _hold(address: tuple[str, int], count: int, data: bytes, stop: threading.Event) -> None:
    socks: list[list[object]] = []  # [socket, bytes sent, last send]
    while not stop.is_set():
        while len(socks) < count:
            conn = socket.create_connection(address, timeout=2)
            conn.setblocking(False)
            socks.append([conn, 0, 0.0])
        now = time.monotonic()
        for entry in list(socks):
            s, sent, last = entry
            assert isinstance(s, socket.socket) and isinstance(sent, int)
            try:
                try:
                    if s.recv(1) == b"":
                        raise OSError("closed by the server")
                except BlockingIOError:
                    pass
                if now - float(last) >= 1.0:  # type: ignore[arg-type]
                    s.send(data[sent : sent + 1])
                    entry[1], entry[2] = sent + 1, now
            except OSError:
                s.close()
                socks.remove(entry)
        stop.wait(0.02)
    for entry in socks:
        entry[0].close()  # type: ignore[attr-defined]


@contextlib.contextmanager
def trickling(address: tuple[str, int], count: int, data: bytes) -> Iterator[None]:
    """While the block runs, `count` clients connected to `address` each send `data` a
    byte a second; one the server closes is replaced at once. Stopped (and its sockets
    closed) when the block ends."""
    stop = threading.Event()
    t = threading.Thread(target=_hold, args=(address, count, data, stop))
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(10)
