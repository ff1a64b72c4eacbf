"""The one accept loop of pyrepl: the replication link, the NBD export and the control
socket each listen through an `Acceptor`.

An Acceptor owns one bound, listening socket and one thread that accepts on it until its
`stop` event is set, handing each connection to `handle` on a thread of its own (a slow
or hostile client holds only its own thread). At most `max_active` handlers run at once:
a connection beyond that is closed at once, so a flood on one port (the NBD export takes
anyone who can reach it) cannot use up the daemon's descriptors and lock the operator
out of the control socket (attack: 261 idle NBD connections did, for as long as they
were held). accept() wakes every `POLL` seconds to
look at `stop`, and `close()` wakes it at once: shutdown() for TCP, a connection of its
own for a unix socket (where shutdown does not wake accept). Out of file descriptors or
memory, it pauses and accepts again (drorch.accepting): the daemon stays reachable.
Imports nothing of pyrepl.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
from collections.abc import Callable

from drorch.accepting import AcceptBackoff

log = logging.getLogger("drorch.pyrepl")

POLL = 0.5  # seconds between looks at `stop` while nobody connects
BACKLOG = 16
Address = tuple[str, int]


def tcp_listener(address: Address) -> socket.socket:
    """Bound to HOST:PORT (IPv6 when HOST has a colon; port 0: any free port)."""
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = socket.socket(family, socket.SOCK_STREAM)
    try:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, port))
    except BaseException:
        srv.close()
        raise
    return srv


def unix_listener(path: str) -> socket.socket:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(path)
    except BaseException:
        srv.close()
        raise
    return srv


class Acceptor:
    def __init__(
        self,
        srv: socket.socket,
        handle: Callable[[socket.socket], None],
        stop: threading.Event,
        *,
        name: str,
        max_active: int,
    ) -> None:
        self.srv = srv
        self.handle = handle
        self.stop = stop
        self.name = name
        self.max_active = max_active
        self.active = 0
        self.refused = 0  # connections closed at once: `max_active` were being served
        self._count_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._unix_path = srv.getsockname() if srv.family == socket.AF_UNIX else None

    @property
    def address(self) -> Address | None:
        """HOST, PORT actually bound (TCP only)."""
        if self.srv.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        host, port = self.srv.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.srv.listen(BACKLOG)
        self.srv.settimeout(POLL)
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        backoff = AcceptBackoff(self.name, log)
        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                pause = backoff.pause_for(exc)
                if pause is None:  # closed under us: the server is stopping
                    log.debug("%s: accept ended: %s", self.name, exc)
                    return
                self.stop.wait(pause)
                continue
            backoff.accepted()
            if self.stop.is_set():
                conn.close()
                return
            if not self._admit():
                conn.close()
                continue
            conn.settimeout(None)  # accepted sockets inherit the listener's timeout
            worker = f"{self.name}-conn"
            try:
                threading.Thread(target=self._run, args=(conn,), name=worker, daemon=True).start()
            except RuntimeError as exc:  # no thread to spare: refuse this one, keep going
                self._release()
                log.warning("%s: cannot serve a connection (%s)", self.name, exc)
                conn.close()
                self.stop.wait(backoff.pause_for(OSError(errno.ENOMEM, "no thread")) or 0.0)

    def _admit(self) -> bool:
        with self._count_lock:
            if self.active < self.max_active:
                self.active += 1
                return True
            self.refused += 1
            first = self.refused == 1 or self.refused % 1000 == 0
        if first:
            log.warning(
                "%s: %d connections are being served, the most it takes at once: closing"
                " new ones (%d so far)",
                self.name,
                self.max_active,
                self.refused,
            )
        return False

    def _release(self) -> None:
        with self._count_lock:
            self.active -= 1

    def _run(self, conn: socket.socket) -> None:
        try:
            self.handle(conn)
        finally:
            self._release()

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting (set `stop`, wake accept(), join) and close the socket."""
        self.stop.set()
        with contextlib.suppress(OSError):
            self.srv.shutdown(socket.SHUT_RDWR)
        if self._unix_path:
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as poke:
                poke.settimeout(1.0)
                poke.connect(self._unix_path)
        if self._thread is not None:
            self._thread.join(timeout)
        self.srv.close()
