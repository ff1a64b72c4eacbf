"""A userspace TCP proxy you can cut: the partition switch for loopback tests (there is
no netem here, and a test may not touch the host's firewall).

    proxy = TcpProxy(("127.0.0.1", 0), ("127.0.0.1", 7443)).start()
    proxy.cut()    # every open connection is reset, new ones are closed at once
    proxy.heal()   # connections are forwarded again

`rate` (bytes per second, None: unlimited) caps what each connection forwards, a slow
link to watch a resync progress; it may be changed while the proxy runs.

`mode="drop"` cuts silently instead: open connections stay open but nothing more is
forwarded either way and new connections are accepted and then ignored, like a
blackholed route (the peers notice only through their own timeouts). Threads only;
`close()` stops everything it started.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

BUFFER = 65536
POLL = 0.05


@dataclass
class _Pair:
    a: socket.socket
    b: socket.socket
    alive: bool = True


@dataclass
class TcpProxy:
    listen: tuple[str, int]
    target: tuple[str, int]
    mode: str = "reset"  # reset | drop
    rate: float | None = None  # bytes per second per connection; None: unlimited
    _cut: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pairs: list[_Pair] = field(default_factory=list)
    _held: list[socket.socket] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    forwarded: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("reset", "drop"):
            raise ValueError(f"mode is reset or drop, not {self.mode!r}")
        self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(self.listen)
        self._srv.listen(16)
        self._srv.settimeout(POLL)
        self.port: int = self._srv.getsockname()[1]

    def start(self) -> TcpProxy:
        self._spawn(self._accept, "proxy-accept")
        return self

    def _spawn(self, target: object, name: str, *args: object) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        t.start()
        self._threads.append(t)

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            pairs = list(self._pairs)
        if self.mode == "reset":
            for p in pairs:
                self._close(p, reset=True)

    def heal(self) -> None:
        with self._lock:
            self._cut = False
            held, self._held = self._held, []
        for s in held:
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut:
                if self.mode == "reset":
                    _reset(conn)
                else:
                    with self._lock:
                        self._held.append(conn)  # accepted, never answered
                continue
            try:
                up = socket.create_connection(self.target, timeout=2.0)
            except OSError:
                _reset(conn)
                continue
            pair = _Pair(conn, up)
            with self._lock:
                self._pairs.append(pair)
            self._spawn(self._pump, "proxy-pump", pair)

    def _pump(self, pair: _Pair) -> None:
        sel = selectors.DefaultSelector()
        try:
            for s in (pair.a, pair.b):
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
        except (OSError, ValueError):  # cut (reset) before this thread began: nothing to pump
            sel.close()
            self._close(pair, reset=False)
            return
        try:
            while pair.alive and not self._stop.is_set():
                for key, _ in sel.select(POLL):
                    src = key.fileobj
                    assert isinstance(src, socket.socket)
                    dst = pair.b if src is pair.a else pair.a
                    try:
                        data = src.recv(BUFFER)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self._close(pair, reset=False)
                        return
                    if self._cut:
                        continue  # drop mode: swallowed
                    try:
                        dst.setblocking(True)
                        dst.sendall(data)
                        dst.setblocking(False)
                        self.forwarded += len(data)
                        if self.rate:
                            time.sleep(len(data) / self.rate)  # a real-time link, not logic
                    except OSError:
                        self._close(pair, reset=False)
                        return
        finally:
            sel.close()

    def _close(self, pair: _Pair, *, reset: bool) -> None:
        with self._lock:
            if not pair.alive:
                return
            pair.alive = False
            if pair in self._pairs:
                self._pairs.remove(pair)
        for s in (pair.a, pair.b):
            if reset:
                _reset(s)
            else:
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._srv.close()
        self.cut()
        with self._lock:
            pairs = list(self._pairs)
        for p in pairs:
            self._close(p, reset=False)
        self.heal()
        for t in self._threads:
            t.join(timeout=2)


def _reset(s: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a REJECT --reject-with tcp-reset would."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        s.close()
