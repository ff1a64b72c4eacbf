"""The quorum client: one blocking connection (`QuorumConnection`), the one-shot
`query_vote` (what `drorch quorum status` and the DRBD fence-peer handler use), and the
`LeaseKeeper` that holds a lease and calls back when quorum is gained or lost.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from drorch.clock import Clock, SystemClock
from drorch.model.types import Witness
from drorch.quorum.config import parse_listen
from drorch.quorum.lease import Change, LeaseEvent, LeaseTracker
from drorch.quorum.protocol import (
    ClientProtocol,
    ErrorMessage,
    Heartbeat,
    Hello,
    ProtocolViolation,
    Release,
    ServerMessage,
    Vote,
    Welcome,
    encode,
)
from drorch.quorum.tls import PinError, client_context, verify_peer_fingerprint

__all__ = [
    "LeaseKeeper",
    "QuorumConnection",
    "QuorumError",
    "QuorumRefused",
    "QuorumUnavailable",
    "Vote",
    "query_vote",
]

log = logging.getLogger("drorch.quorum.client")

MAX_RECONNECT_DELAY = 5.0


class QuorumError(Exception):
    """Base of everything the quorum client raises."""


class QuorumUnavailable(QuorumError):
    """The witness could not be reached, timed out, broke the protocol, or is not the
    pinned server. Treat as "no vote": never as a grant."""


class QuorumRefused(QuorumError):
    """The witness answered with an `error` frame (`code`: unauthorized, version, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"witness refused: {code}: {message}")
        self.code = code


class QuorumConnection:
    """One authenticated session with the witness. Blocking, with a timeout per call."""

    def __init__(
        self,
        server: str,
        fingerprint: str,
        cert: Path,
        key: Path,
        cluster: str,
        site: str,
        node: str,
        timeout: float = 5.0,
        clock: Clock | None = None,
        server_cert_file: Path | None = None,
    ) -> None:
        self.host, self.port = parse_listen(server)
        self.fingerprint = fingerprint
        self.hello = Hello(cluster, site, node)
        self.timeout = timeout
        self.clock = clock or SystemClock()
        try:
            self._context = client_context(cert, key, server_cert_file)
        except (ssl.SSLError, OSError) as exc:
            raise QuorumError(f"cannot use client cert {cert} / key {key}: {exc}") from exc
        self._sock: ssl.SSLSocket | None = None
        self._protocol = ClientProtocol()
        self._inbox: list[ServerMessage] = []
        self.welcome: Welcome | None = None

    def __enter__(self) -> QuorumConnection:
        if self._sock is None:
            self.connect()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def connect(self) -> Welcome:
        """TCP connect, TLS 1.3 handshake, check the server's pin, hello → welcome."""
        deadline = self.clock.monotonic() + self.timeout
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise QuorumUnavailable(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock = self._context.wrap_socket(raw)
        except (ssl.SSLError, OSError) as exc:
            raw.close()
            raise QuorumUnavailable(f"TLS handshake with {self.host}:{self.port}: {exc}") from exc
        try:
            verify_peer_fingerprint(self._sock, self.fingerprint)
        except (PinError, ValueError) as exc:
            self.close()
            raise QuorumUnavailable(str(exc)) from exc
        try:
            self._send(encode(self.hello))
            msg = self._next(deadline)
        except QuorumUnavailable as exc:
            raise QuorumUnavailable(
                f"{exc} (before welcome: is this node's certificate pinned on the witness?)"
            ) from exc
        if not isinstance(msg, Welcome):
            self.close()
            raise QuorumUnavailable(f"expected welcome, got {type(msg).__name__}")
        if msg.version != 1:
            self.close()
            raise QuorumUnavailable(f"witness speaks protocol version {msg.version}, not 1")
        self.welcome = msg
        return msg

    def _send(self, frame: bytes) -> None:
        if self._sock is None:
            raise QuorumUnavailable("not connected")
        try:
            self._sock.sendall(frame)
        except (ssl.SSLError, OSError) as exc:
            self.close()
            raise QuorumUnavailable(f"send failed: {exc}") from exc

    def _next(self, deadline: float, quiet_ok: bool = False) -> ServerMessage | None:
        """The next message from the server, or QuorumUnavailable/QuorumRefused. With
        `quiet_ok`, None when nothing arrived by `deadline` (the session stays open)."""
        while not self._inbox:
            sock = self._sock
            if sock is None:
                raise QuorumUnavailable("not connected")
            left = deadline - self.clock.monotonic()
            if left <= 0:
                if quiet_ok:
                    return None
                self.close()
                raise QuorumUnavailable(f"no answer from the witness within {self.timeout:g}s")
            try:
                sock.settimeout(left)
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except (ssl.SSLError, OSError) as exc:
                self.close()
                raise QuorumUnavailable(f"receive failed: {exc}") from exc
            if not data:
                self.close()
                raise QuorumUnavailable("the witness closed the connection")
            for event in self._protocol.receive(data):
                if isinstance(event, ProtocolViolation):
                    self.close()
                    raise QuorumUnavailable(f"witness broke the protocol: {event.message}")
                self._inbox.append(event)
        msg = self._inbox.pop(0)
        if isinstance(msg, ErrorMessage):
            self.close()
            raise QuorumRefused(msg.code, msg.message)
        return msg

    def send_heartbeat(self, seq: int, want: bool, nodes: int) -> None:
        self._send(encode(Heartbeat(seq, want, nodes)))

    def receive_vote(self, timeout: float | None = None) -> Vote:
        """The next vote; QuorumUnavailable (and the session closed) after `timeout`."""
        deadline = self.clock.monotonic() + (self.timeout if timeout is None else timeout)
        vote = self.poll_vote(deadline, quiet_ok=False)
        assert vote is not None
        return vote

    def poll_vote(self, deadline: float, quiet_ok: bool = True) -> Vote | None:
        """The next vote, or None if none arrived by monotonic `deadline`."""
        msg = self._next(deadline, quiet_ok)
        if msg is None:
            return None
        if not isinstance(msg, Vote):
            self.close()
            raise QuorumUnavailable(f"expected vote, got {type(msg).__name__}")
        return msg

    def heartbeat(self, seq: int, want: bool, nodes: int) -> Vote:
        """Send one heartbeat and wait for the vote with the same seq."""
        self.send_heartbeat(seq, want, nodes)
        deadline = self.clock.monotonic() + self.timeout
        while True:
            vote = self.receive_vote(max(0.0, deadline - self.clock.monotonic()))
            if vote.seq == seq:
                return vote

    def release(self) -> Vote:
        """Give quorum up on purpose (planned switch); answered by a vote with seq 0."""
        self._send(encode(Release()))
        deadline = self.clock.monotonic() + self.timeout
        while True:
            vote = self.receive_vote(max(0.0, deadline - self.clock.monotonic()))
            if vote.seq == 0:
                return vote

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def query_vote(
    server: str,
    fingerprint: str,
    cert: Path,
    key: Path,
    cluster: str,
    site: str,
    node: str,
    timeout: float = 5.0,
) -> Vote:
    """Hello plus one `want:false` heartbeat: the witness's view, changing nothing.

    Raises QuorumUnavailable (unreachable, timeout, wrong server pin) or QuorumRefused."""
    conn = QuorumConnection(server, fingerprint, cert, key, cluster, site, node, timeout)
    with conn:
        return conn.heartbeat(1, want=False, nodes=0)


Callback = Callable[[LeaseEvent], None]


class LeaseKeeper:
    """Holds the site's lease on a background thread: heartbeats every `heartbeat_ms` (from
    the welcome), reconnects on failure, and calls `on_gained`/`on_lost` from that thread.

    `holds()` is true only until the send time of the heartbeat that earned the last
    granted vote + lease − safety margin (see `LeaseTracker`)."""

    def __init__(
        self,
        connect: Callable[[], QuorumConnection],
        on_gained: Callback,
        on_lost: Callback,
        clock: Clock | None = None,
        want: bool = True,
        nodes: Callable[[], int] = lambda: 1,
        safety_margin: float | None = None,
        reconnect_delay: float = 0.5,
    ) -> None:
        self._connect = connect
        self._on = {Change.GAINED: on_gained, Change.LOST: on_lost}
        self.clock = clock or SystemClock()
        self.want = want
        self._release_requested = threading.Event()
        self.released = threading.Event()
        self._nodes = nodes
        self.tracker = LeaseTracker(safety_margin)
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max(reconnect_delay, MAX_RECONNECT_DELAY)
        self._failures = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._conn: QuorumConnection | None = None
        self._seq = 0
        self.last_error: str | None = None

    @classmethod
    def for_witness(
        cls,
        witness: Witness,
        cluster: str,
        site: str,
        node: str,
        on_gained: Callback,
        on_lost: Callback,
        clock: Clock | None = None,
        nodes: Callable[[], int] = lambda: 1,
        base_dir: Path = Path("."),
    ) -> LeaseKeeper:
        """A keeper for the cluster model's `Witness` (address, pinned fingerprint, and this
        site's client cert/key, relative to `base_dir` — the cluster config's folder)."""
        if witness.cert is None or witness.key is None:
            raise QuorumError("the witness config names no client cert/key for this site")
        cert, key = base_dir / witness.cert, base_dir / witness.key

        def connect() -> QuorumConnection:
            return QuorumConnection(
                witness.address, witness.fingerprint, cert, key, cluster, site, node, clock=clock
            )

        return cls(connect, on_gained, on_lost, clock=clock, nodes=nodes)

    def holds(self) -> bool:
        with self._lock:
            return self.tracker.holds(self.clock.monotonic())

    @property
    def epoch(self) -> int:
        return self.tracker.epoch

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="quorum-lease", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _emit(self, events: list[LeaseEvent]) -> None:
        for event in events:
            log.info("quorum %s: %s", event.change.value, event.reason)
            self._on[event.change](event)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._session()
                except QuorumError as exc:
                    self.last_error = str(exc)
                    self._failures += 1
                    log.warning("quorum witness (attempt %d): %s", self._failures, exc)
                with self._lock:
                    self.tracker.forget_outstanding()
                # quick first retries (a lease may be saved), then back off to a steady pace
                delay = self.reconnect_delay * 2 ** min(max(self._failures - 1, 0), 6)
                self._wait_or_lose(min(delay, self.max_reconnect_delay))
        finally:
            if self._conn is not None:
                self._conn.close()

    def _wait_or_lose(self, seconds: float) -> None:
        """Sleep `seconds` (or until stopped), waking exactly when the lease runs out."""
        end = self.clock.monotonic() + seconds
        while not self._stop.is_set():
            now = self.clock.monotonic()
            with self._lock:
                lost = self.tracker.tick(now)
                until = self.tracker.held_until
            if lost is not None:
                self._emit([lost])
            if now >= end:
                return
            wake = end if until is None else min(end, until)
            self._stop.wait(max(0.0, wake - now))

    def _session(self) -> None:
        conn = self._conn = self._connect()
        try:
            welcome = conn.welcome or conn.connect()
            self._failures = 0
            interval = welcome.heartbeat_ms / 1000
            while not self._stop.is_set():
                self._seq += 1
                sent_at = self.clock.monotonic()
                want = self.want
                with self._lock:
                    self.tracker.sent(self._seq, want, sent_at)
                conn.send_heartbeat(self._seq, want, self._nodes())
                self._receive_until(conn, sent_at + interval)
        finally:
            conn.close()
            self._conn = None

    def _receive_until(self, conn: QuorumConnection, next_send: float) -> None:
        """Take votes until it is time for the next heartbeat; report lapses on time."""
        while not self._stop.is_set():
            if self._release_requested.is_set():
                self._release_requested.clear()
                conn.release()
                self.released.set()
            now = self.clock.monotonic()
            with self._lock:
                lost = self.tracker.tick(now)
                until = self.tracker.held_until
            if lost is not None:
                self._emit([lost])
            if now >= next_send:
                return
            # wake for the next heartbeat, the lease running out, or a release request
            wake = min(next_send, until if until is not None else next_send, now + 0.05)
            vote = conn.poll_vote(wake)
            if vote is None:
                continue
            with self._lock:
                events = self.tracker.vote(vote, self.clock.monotonic())
            self._emit(events)

    def release(self, timeout: float = 5.0) -> bool:
        """Stop asking for quorum and give it up on purpose (planned switch). The lease
        counts as lost at once; True when the witness acknowledged within `timeout`."""
        self.want = False
        with self._lock:
            dropped = self.tracker.held_until is not None
            self.tracker.held_until = None
            self.tracker.forget_outstanding()
        if dropped:
            lost = LeaseEvent(
                Change.LOST, self.tracker.epoch, "released on purpose", at=self.clock.monotonic()
            )
            self._emit([lost])
        self.released.clear()
        self._release_requested.set()
        return self.released.wait(timeout)
