"""The NBD export's connection slots: how many clients may be past the handshake at
once, and which one gives its slot up when a new client needs it.

A client that finished the handshake and then sends nothing is legitimate (QEMU keeps
its connection open and silent while the guest does no I/O), so nothing is ever closed
for being idle alone. But slots are few (`MAX_CLIENTS`), and connections whose client
vanished (a host that rebooted, a path that died: QEMU reconnects on a new connection
and the old one is never closed from its side) or that somebody opened and forgot would
otherwise hold them forever and lock every new client out (attack: 64 idle connections
after NBD_OPT_GO, then nbdinfo and qemu-io were cut before the handshake).

So, when a client finishes its handshake and every slot is held, `decide_slot` picks the
connection idle the longest — nothing in flight, no request begun, and silent for at
least `evict_idle` seconds — and the server closes it to admit the newcomer. With none
such, the newcomer is refused with a reason (NBD_REP_ERR_POLICY on NBD_OPT_GO). A
request whose first byte has arrived is in flight until its reply has gone; a
connection with a request in flight is never chosen.

`decide_slot` is pure (a snapshot and `now`); `Slots` holds the live connections under
a lock and does the closing.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger("drorch.pyrepl.nbd")

# Clients past the handshake at once (QEMU opens one per disk, a few with multi-conn).
MAX_CLIENTS = 64
# A connection silent this long, with nothing in flight, may be closed when a new client
# needs its slot (and only then). QEMU between two guest I/Os is silent for seconds, not
# a minute, while it is doing anything at all.
EVICT_IDLE = 60.0


@dataclass(frozen=True)
class Held:
    """One connection holding a slot, as `decide_slot` sees it."""

    key: int
    peer: str
    busy: bool  # a request begun and not yet answered (or a write's ack still pending)
    idle_since: float  # monotonic: when its last request was answered (or it was admitted)


@dataclass(frozen=True)
class SlotDecision:
    admit: bool
    evict: int | None  # the key of the connection to close first
    reason: str


def decide_slot(
    held: Sequence[Held], newcomer: str, now: float, *, limit: int, evict_idle: float
) -> SlotDecision:
    """Whether `newcomer` (its address) gets a slot, and whose slot it takes."""
    if len(held) < limit:
        return SlotDecision(True, None, f"{len(held) + 1} of {limit} slots in use")
    idle = [h for h in held if not h.busy and now - h.idle_since >= evict_idle]
    if not idle:
        busy = sum(h.busy for h in held)
        return SlotDecision(
            False,
            None,
            f"all {limit} NBD connection slots are in use ({busy} with requests in flight)"
            f" and none has been idle for {evict_idle:g} s; try again later",
        )
    victim = min(idle, key=lambda h: (h.idle_since, h.key))
    return SlotDecision(
        True,
        victim.key,
        f"all {limit} NBD connection slots are in use: closed the connection from"
        f" {victim.peer} (idle {now - victim.idle_since:.0f} s, nothing in flight) to admit"
        f" {newcomer}",
    )


class _Conn:
    def __init__(self, sock: socket.socket, peer: str, pending: Callable[[], int], now: float):
        self.sock = sock
        self.peer = peer
        self.pending = pending  # writes whose acknowledgement has not gone out yet
        self.in_request = False
        self.idle_since = now
        self.evicted = False


class Slots:
    """The live connections past the handshake. Every method is thread-safe."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        limit: int = MAX_CLIENTS,
        evict_idle: float = EVICT_IDLE,
    ) -> None:
        self.clock = clock
        self.limit = limit
        self.evict_idle = evict_idle
        self._lock = threading.Lock()
        self._conns: dict[int, _Conn] = {}
        self.evicted = 0
        self.refused = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._conns)

    def claim(self, sock: socket.socket, peer: str, pending: Callable[[], int]) -> str | None:
        """A slot for `sock` (its handshake is ending): None when granted, else why not.
        Closes the connection `decide_slot` chose to make room."""
        with self._lock:
            now = self.clock()
            held = [
                Held(key, c.peer, c.in_request or c.pending() > 0, c.idle_since)
                for key, c in self._conns.items()
            ]
            decision = decide_slot(held, peer, now, limit=self.limit, evict_idle=self.evict_idle)
            if not decision.admit:
                self.refused += 1
                log.warning("nbd client %s refused: %s", peer, decision.reason)
                return decision.reason
            if decision.evict is not None:
                victim = self._conns.pop(decision.evict)
                victim.evicted = True  # its thread stops before serving anything more
                self.evicted += 1
                with contextlib.suppress(OSError):
                    victim.sock.shutdown(socket.SHUT_RDWR)
                log.warning("nbd: %s", decision.reason)
            self._conns[id(sock)] = _Conn(sock, peer, pending, now)
            return None

    def begin(self, sock: socket.socket) -> bool:
        """A request's first byte arrived: in flight from now. False when the connection
        lost its slot meanwhile (it must stop: its socket is shut down)."""
        with self._lock:
            conn = self._conns.get(id(sock))
            if conn is None or conn.evicted:
                return False
            conn.in_request = True
            return True

    def answered(self, sock: socket.socket) -> None:
        """The request begun last is handled (a write's ack may still be pending)."""
        with self._lock:
            conn = self._conns.get(id(sock))
            if conn is not None:
                conn.in_request = False
                conn.idle_since = self.clock()

    def settled(self, sock: socket.socket) -> None:
        """The last pending write acknowledgement went out: idle from now (unless a
        request has begun since)."""
        with self._lock:
            conn = self._conns.get(id(sock))
            if conn is not None and not conn.in_request:
                conn.idle_since = self.clock()

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            conn = self._conns.get(id(sock))
            if conn is not None and conn.sock is sock:
                del self._conns[id(sock)]
