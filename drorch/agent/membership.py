"""Membership: the sites' agents heartbeat each other over mutual TLS.

Every agent listens on `agent.port` and dials every other node's agent, sending one
heartbeat frame per `agent.heartbeat`. A node is a member while heartbeats *from* it
arrive within `agent.member_timeout` AND its last heartbeat says it hears this node
(`hears`: the nodes whose beats reached it): membership is mutual. A one-way link
otherwise gave the side that still hears "2 of 2 members, majority" while the other side,
hearing nobody, took the witness's lease and took over (both primary, with the first
side cut off from the witness). The node itself always is a member.

Trust is pinned both ways, with the node certificates the cluster file names
(`nodes[].agent_cert`): the dialer accepts only the dialled node's certificate, and the
listener accepts only certificates of the cluster's other nodes and maps each to its
node — a frame claiming to come from another node closes the connection. Frames are the
quorum protocol's (4-byte length + JSON object): `{"type": "hb", "cluster", "node",
"seq", "hears"}`. A bad frame closes that one connection. A beat without `hears` (an
agent from before it existed) is taken as hearing this node.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from drorch.accepting import AcceptBackoff
from drorch.clock import Clock
from drorch.quorum.framing import FrameDecoder
from drorch.quorum.protocol import encode_object, parse_body
from drorch.quorum.tls import (
    client_context,
    fingerprint_of,
    peer_fingerprint,
    server_context,
    wrap_client,
)

log = logging.getLogger("drorch.agent.membership")
MAX_CONNECTIONS = 16  # authenticated peers' connections served at once
# Connections still in their TLS handshake, at most; a new one evicts the oldest, so a
# peer's reconnect always gets its turn. They used to share MAX_CONNECTIONS with the
# peers, bounded only per receive: 16 clients trickling a ClientHello held every slot
# for good and the agent lost its peer from the members (attack).
MAX_HANDSHAKES = 16
HANDSHAKE_TIMEOUT = 5.0


class _Handshakes:
    """The connections not yet authenticated, oldest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: OrderedDict[int, ssl.SSLSocket] = OrderedDict()
        self.evicted = 0

    def admit(self, conn: ssl.SSLSocket) -> None:
        with self._lock:
            if len(self._open) >= MAX_HANDSHAKES:
                _, oldest = self._open.popitem(last=False)
                self.evicted += 1
                with contextlib.suppress(OSError):  # the socket's, not SSLSocket's, shutdown:
                    socket.socket.shutdown(oldest, socket.SHUT_RDWR)  # wakes its handshake
            self._open[id(conn)] = conn

    def done(self, conn: ssl.SSLSocket) -> None:
        with self._lock:
            self._open.pop(id(conn), None)


@dataclass(frozen=True)
class Peer:
    node: str
    site: str
    host: str
    port: int
    cert: Path


class MemberTable:
    """When each node was last heard from. Thread-safe; time from the injected clock."""

    def __init__(self, me: str, member_timeout: float, clock: Clock) -> None:
        self.me = me
        self.member_timeout = member_timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._seq: dict[str, int] = {}
        self._hears_me: dict[str, bool] = {}

    def heard(self, node: str, seq: int, hears_me: bool = True) -> None:
        with self._lock:
            if seq <= self._seq.get(node, -1):
                return  # a replayed or reordered beat proves nothing new
            self._seq[node] = seq
            self._last[node] = self.clock.monotonic()
            self._hears_me[node] = hears_me

    def heard_from(self) -> tuple[str, ...]:
        """The nodes whose beats arrived within member_timeout (one way: what this node's
        own beats report as `hears`)."""
        now = self.clock.monotonic()
        with self._lock:
            return tuple(sorted(n for n, t in self._last.items() if now - t <= self.member_timeout))

    def members(self) -> tuple[str, ...]:
        """This node, and every node heard from that also hears this node."""
        heard = self.heard_from()
        with self._lock:
            mutual = {n for n in heard if self._hears_me.get(n, True)}
        return tuple(sorted(mutual | {self.me}))

    def one_way(self) -> tuple[str, ...]:
        """Nodes heard from that do not hear this node (not members: the link is one-way)."""
        heard = self.heard_from()
        with self._lock:
            return tuple(n for n in heard if not self._hears_me.get(n, True))

    def last_heard(self) -> Mapping[str, float]:
        now = self.clock.monotonic()
        with self._lock:
            return {n: now - t for n, t in self._last.items()}

    def forget_restart(self, node: str) -> None:
        """A peer agent restarted (its sequence starts again): accept its new beats."""
        with self._lock:
            self._seq.pop(node, None)


class Membership:
    def __init__(
        self,
        *,
        cluster: str,
        me: str,
        listen: tuple[str, int],
        cert: Path,
        key: Path,
        peers: list[Peer],
        heartbeat: float,
        member_timeout: float,
        clock: Clock,
    ) -> None:
        self.cluster, self.me, self.peers = cluster, me, peers
        self.heartbeat = heartbeat
        self.clock = clock
        self.table = MemberTable(me, member_timeout, clock)
        self.bad_frames = 0
        self._by_fingerprint = {fingerprint_of(p.cert): p.node for p in peers}
        self._server_ctx = server_context(cert, key, [p.cert for p in peers])
        self._client_ctx = {p.node: client_context(cert, key, p.cert) for p in peers}
        self._listener = socket.create_server(listen, reuse_port=False)
        self._listener.settimeout(0.2)
        self.address = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._handshakes = _Handshakes()
        self._blocked: set[str] = set()  # tests: partition by refusing to dial these

    def start(self) -> None:
        self._spawn(self._accept_loop, "accept")
        for p in self.peers:
            self._spawn(lambda p=p: self._dial_loop(p), f"dial-{p.node}")

    def _spawn(self, target: object, name: str) -> None:
        t = threading.Thread(target=target, name=f"membership-{name}", daemon=True)  # type: ignore[arg-type]
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        for t in self._threads:
            t.join(timeout=5)

    # -- listening side -------------------------------------------------------------
    def _accept_loop(self) -> None:
        backoff = AcceptBackoff("membership link", log)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                pause = backoff.pause_for(exc)
                if pause is None:  # closed: membership is stopping
                    return
                self._stop.wait(pause)
                continue
            backoff.accepted()
            try:
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
            except RuntimeError:  # no thread to spare
                conn.close()

    def _serve(self, raw: socket.socket) -> None:
        serving = False
        conn: ssl.SSLSocket | None = None
        try:
            raw.settimeout(HANDSHAKE_TIMEOUT)
            ctx = self._server_ctx
            conn = ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            self._handshakes.admit(conn)
            conn.do_handshake()
            self._handshakes.done(conn)
            node = self._by_fingerprint.get(peer_fingerprint(conn))
            if node is None or not self._open.acquire(blocking=False):
                return
            serving = True
            conn.settimeout(max(self.table.member_timeout, 1.0))
            self._read_beats(conn, node)
        except (OSError, ssl.SSLError, ValueError) as e:
            log.debug("membership connection dropped: %s", e)
        finally:
            if conn is not None:
                self._handshakes.done(conn)
                conn.close()
            with contextlib.suppress(OSError):
                raw.close()
            if serving:
                self._open.release()

    def _read_beats(self, conn: ssl.SSLSocket, node: str) -> None:
        decoder = FrameDecoder()
        while not self._stop.is_set():
            data = conn.recv(4096)
            if not data:
                return
            for body in decoder.feed(data):
                try:
                    obj = parse_body(body)
                    hears = obj.get("hears", [self.me])
                    ok = (
                        obj.get("type") == "hb"
                        and obj.get("cluster") == self.cluster
                        and obj.get("node") == node
                        and isinstance(obj.get("seq"), int)
                        and isinstance(hears, list)
                    )
                except ValueError:
                    ok = False
                if not ok:
                    self.bad_frames += 1
                    return
                if obj["seq"] == 0:
                    self.table.forget_restart(node)
                self.table.heard(node, obj["seq"], self.me in hears)
            if decoder.error is not None:
                self.bad_frames += 1
                return

    # -- dialling side --------------------------------------------------------------
    def _dial_loop(self, peer: Peer) -> None:
        seq = 0
        while not self._stop.is_set():
            if peer.node in self._blocked:
                self._stop.wait(self.heartbeat)
                continue
            try:
                raw = socket.create_connection((peer.host, peer.port), timeout=self.heartbeat)
                with wrap_client(self._client_ctx[peer.node], raw) as conn:
                    while not self._stop.is_set() and peer.node not in self._blocked:
                        frame = {"type": "hb", "cluster": self.cluster, "node": self.me}
                        hears = list(self.table.heard_from())
                        conn.sendall(encode_object({**frame, "seq": seq, "hears": hears}))
                        seq += 1
                        self._stop.wait(self.heartbeat)
                        if _closed_by_peer(conn):
                            log.debug("membership link to %s closed by the peer", peer.node)
                            break  # dial again: the peer's agent may have restarted
            except (OSError, ssl.SSLError) as e:
                log.debug("membership dial to %s failed: %s", peer.node, e)
                self._stop.wait(self.heartbeat)

    def block(self, node: str, blocked: bool = True) -> None:
        """Stop (or resume) dialling `node`: for fault injection in tests and the lab."""
        (self._blocked.add if blocked else self._blocked.discard)(node)


def _closed_by_peer(conn: ssl.SSLSocket) -> bool:
    """The listener never sends: a readable link is one it closed (its agent died or
    stopped), and the dialler would otherwise go on writing into it for as long as
    something on the path keeps accepting the bytes. TLS 1.3 session tickets also make
    the socket readable; they are consumed here and are not a close."""
    if not select.select([conn], [], [], 0)[0] and not conn.pending():
        return False
    timeout = conn.gettimeout()
    conn.settimeout(0.0)
    try:
        return conn.recv(1) == b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    finally:
        conn.settimeout(timeout)
