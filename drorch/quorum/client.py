"""The quorum client: one blocking connection (`QuorumConnection`) and the one-shot
`query_vote` (what `drorch quorum status` and the DRBD fence-peer handler use). The
`LeaseKeeper` that holds a lease and calls back when quorum is gained or lost lives in
`drorch.quorum.keeper` (which imports this module; this one never imports it).
"""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path
from types import TracebackType

from drorch.clock import Clock, SystemClock
from drorch.quorum.config import parse_listen
from drorch.quorum.messages import (
    NOT_CURRENT,
    NOT_HOLDER,
    RECORD_CHANGED,
    Cleared,
    Current,
    ErrorMessage,
    Heartbeat,
    Hello,
    Outdate,
    Outdated,
    ProtocolViolation,
    Release,
    ServerMessage,
    Vote,
    Welcome,
)
from drorch.quorum.protocol import ClientProtocol, encode
from drorch.quorum.tls import PinError, client_context, verify_peer_fingerprint, wrap_client

__all__ = [
    "NotCurrent",
    "NotHolder",
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


class NotHolder(QuorumRefused):
    """An `outdate`/`current` was refused: this site holds no live lease. The session
    stays open."""


class NotCurrent(QuorumRefused):
    """An `outdate` was refused: the witness records this site's own copy as outdated
    (send it with force only after a promotion forced with a data-loss acknowledgement).
    The session stays open."""


class RecordChanged(QuorumRefused):
    """A `current` naming a record serial was refused: a newer `outdate` re-wrote the
    record since, and it stands (the peer was lost again). The session stays open."""


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
            self._sock = wrap_client(self._context, raw)
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
        if isinstance(msg, ErrorMessage) and msg.code == NOT_HOLDER:
            raise NotHolder(msg.code, msg.message)
        if isinstance(msg, ErrorMessage) and msg.code == NOT_CURRENT:
            raise NotCurrent(msg.code, msg.message)
        if isinstance(msg, ErrorMessage) and msg.code == RECORD_CHANGED:
            raise RecordChanged(msg.code, msg.message)
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

    def outdate(self, volume: str, force: bool = False) -> int:
        """Record, durably on the witness, that only this site's copy of `volume` is
        current (the peer's is outdated). Returns the epoch since which it is so.
        NotHolder if this site holds no live lease; QuorumUnavailable if no answer."""
        return self.outdate_record(volume, force).epoch

    def outdate_record(self, volume: str, force: bool = False) -> Outdated:
        """`outdate`, answered with the record's epoch and serial (for `current`)."""
        self._send(encode(Outdate(volume, force)))
        reply = self._reply(Outdated, volume)
        assert isinstance(reply, Outdated)
        return reply

    def current(self, volume: str, serial: int | None = None) -> int:
        """Clear the outdate record of `volume` (the peer is UpToDate again); returns the
        cluster's epoch. With `serial` (what `outdate_record` answered), only that write
        of the record is cleared: RecordChanged when a newer `outdate` re-wrote it.
        NotHolder / QuorumUnavailable as for `outdate`."""
        self._send(encode(Current(volume, serial)))
        reply = self._reply(Cleared, volume)
        assert isinstance(reply, Cleared)
        return reply.epoch

    def _reply(self, kind: type[Outdated] | type[Cleared], volume: str) -> Outdated | Cleared:
        """The answer to an outdate/current (votes of earlier heartbeats are skipped)."""
        deadline = self.clock.monotonic() + self.timeout
        while True:
            msg = self._next(deadline)
            if isinstance(msg, kind) and msg.volume == volume:
                return msg
            if not isinstance(msg, Vote):
                self.close()
                raise QuorumUnavailable(f"expected {kind.__name__.lower()}, got {msg!r}")

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
