"""Membership: the sites' agents heartbeat each other over mutual TLS.

Every agent listens on `agent.port` and dials every other node's agent, sending one
heartbeat frame per `agent.heartbeat`. A node is a member while heartbeats *from* it
arrive within `agent.member_timeout`; the node itself always is one.

Trust is pinned both ways, with the node certificates the cluster file names
(`nodes[].agent_cert`): the dialer accepts only the dialled node's certificate, and the
listener accepts only certificates of the cluster's other nodes and maps each to its
node — a frame claiming to come from another node closes the connection. Frames are the
quorum protocol's (4-byte length + JSON object): `{"type": "hb", "cluster", "node",
"seq"}`. A bad frame closes that one connection.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from drorch.clock import Clock
from drorch.quorum.protocol import FrameDecoder, encode_object, parse_body
from drorch.quorum.tls import client_context, fingerprint_of, peer_fingerprint, server_context

log = logging.getLogger("drorch.agent.membership")
MAX_CONNECTIONS = 16
HANDSHAKE_TIMEOUT = 5.0


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

    def heard(self, node: str, seq: int) -> None:
        with self._lock:
            if seq <= self._seq.get(node, -1):
                return  # a replayed or reordered beat proves nothing new
            self._seq[node] = seq
            self._last[node] = self.clock.monotonic()

    def members(self) -> tuple[str, ...]:
        now = self.clock.monotonic()
        with self._lock:
            alive = {n for n, t in self._last.items() if now - t <= self.member_timeout}
        return tuple(sorted(alive | {self.me}))

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
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._open.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(HANDSHAKE_TIMEOUT)
            with self._server_ctx.wrap_socket(raw, server_side=True) as conn:
                node = self._by_fingerprint.get(peer_fingerprint(conn))
                if node is None:
                    return
                conn.settimeout(max(self.table.member_timeout, 1.0))
                self._read_beats(conn, node)
        except (OSError, ssl.SSLError, ValueError) as e:
            log.debug("membership connection dropped: %s", e)
        finally:
            with contextlib.suppress(OSError):
                raw.close()
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
                    ok = (
                        obj.get("type") == "hb"
                        and obj.get("cluster") == self.cluster
                        and obj.get("node") == node
                        and isinstance(obj.get("seq"), int)
                    )
                except ValueError:
                    ok = False
                if not ok:
                    self.bad_frames += 1
                    return
                if obj["seq"] == 0:
                    self.table.forget_restart(node)
                self.table.heard(node, obj["seq"])
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
                with self._client_ctx[peer.node].wrap_socket(raw) as conn:
                    while not self._stop.is_set() and peer.node not in self._blocked:
                        frame = {"type": "hb", "cluster": self.cluster, "node": self.me}
                        conn.sendall(encode_object({**frame, "seq": seq}))
                        seq += 1
                        self._stop.wait(self.heartbeat)
            except (OSError, ssl.SSLError) as e:
                log.debug("membership dial to %s failed: %s", peer.node, e)
                self._stop.wait(self.heartbeat)

    def block(self, node: str, blocked: bool = True) -> None:
        """Stop (or resume) dialling `node`: for fault injection in tests and the lab."""
        (self._blocked.add if blocked else self._blocked.discard)(node)
