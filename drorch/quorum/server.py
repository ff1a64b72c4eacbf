"""The quorum daemon: one asyncio event loop, non-blocking TLS sockets, no thread per client.

It accepts connections (capping those that have not sent `hello`, in total and per source
address), authorizes each `hello` against the pins of that cluster's site, answers heartbeats
from the pure `GrantBook`, and persists every grant change *before* the vote that announces
it leaves (group commit: votes wait for the durable version they depend on).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections import OrderedDict

from drorch.clock import Clock
from drorch.quorum.config import QuorumdConfig
from drorch.quorum.grants import GrantBook
from drorch.quorum.messages import (
    BAD_FRAME,
    NOT_HOLDER,
    UNAUTHORIZED,
    ClientMessage,
    Current,
    Heartbeat,
    Hello,
    Outdate,
    Welcome,
)
from drorch.quorum.outdates import OutdateBook
from drorch.quorum.persister import Persister, PersistFailed
from drorch.quorum.protocol import encode, encode_vote, error_frame
from drorch.quorum.record_request import answer_record
from drorch.quorum.session import Session, Stage
from drorch.quorum.state import QuorumState, write_state

log = logging.getLogger("drorch.quorumd")

HANDSHAKE_DEADLINE = 5.0  # seconds from accept to a completed TLS handshake and `hello`
ACCEPTS_PER_WAKEUP = 128
ACCEPT_PAUSE_ON_EMFILE = 0.1
# a client heartbeats about once per heartbeat_ms; a session sending far more is flooding
# (averaged over at least a second, so a burst of pipelined frames is fine)
MAX_FRAMES_PER_SECOND = 1000


def source_key(address: str) -> str:
    """What the per-address pre-hello cap counts: the IPv4 address, or the IPv6 /64 (one
    host usually owns a whole /64, so counting single IPv6 addresses would cap nothing)."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


class QuorumServer:
    def __init__(
        self,
        config: QuorumdConfig,
        context: ssl.SSLContext,
        grants: GrantBook,
        state: QuorumState,
        clock: Clock,
    ) -> None:
        self.config = config
        self.context = context
        self.grants = grants
        self.outdates = OutdateBook(state.outdates, state.outdate_serial)
        self.state = state
        self.clock = clock
        self.pins = config.pins_by_fingerprint()
        self.sessions: dict[int, Session] = {}
        self.unauthenticated: OrderedDict[int, Session] = OrderedDict()  # oldest first
        self.unauth_by_address: dict[str, int] = {}
        self.refused = 0
        self.evicted = 0
        self._listener: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._persister: Persister | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self.address: tuple[str, int] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def snapshot(self) -> QuorumState:
        """The durable state as of now (taken on the loop thread, written on another)."""
        s = self.state
        return QuorumState(
            s.max_lease_ms,
            s.max_switch_delay_ms,
            self.grants.durable(),
            self.outdates.durable(),
            self.outdates.serial,
        )

    def write(self, state: QuorumState) -> None:
        write_state(self.config.state_file, state)

    def persist_now(self) -> None:
        """Write the state synchronously (shutdown)."""
        self.write(self.snapshot())

    def bind(self) -> tuple[str, int]:
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.config.host, self.config.port))
            listener.listen(4096)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        host, port = listener.getsockname()[:2]
        self.address = (host, port)
        return host, port

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then persist and close everything."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._listener is None:
            self.bind()
        assert self._listener is not None
        self._persister = Persister(loop, self.snapshot, self.write)
        loop.add_reader(self._listener.fileno(), self._accept)
        self._schedule_sweep()
        host, port = self.address or ("?", 0)
        log.info(
            "serving %d cluster(s) on %s:%d (heartbeat %d ms, lease %d ms, switch delay %d ms)",
            len(self.config.clusters),
            host,
            port,
            self.config.heartbeat_ms,
            self.config.lease_ms,
            self.config.switch_delay_ms,
        )
        stop_task = asyncio.ensure_future(stop.wait())
        fail_task = asyncio.ensure_future(self._persister.failed_event.wait())
        try:
            await asyncio.wait({stop_task, fail_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stop_task, fail_task):
                task.cancel()
            await asyncio.gather(stop_task, fail_task, return_exceptions=True)
            self._shutdown()
            await self._persister.idle.wait()
            if self._persister.failed is None:
                self.persist_now()
        if self._persister.failed is not None:
            raise PersistFailed(str(self._persister.failed))

    def _shutdown(self) -> None:
        assert self._loop is not None
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._listener is not None:
            self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        for session in list(self.sessions.values()):
            session.close("daemon stopping")

    # --- accepting ---------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None and self._loop is not None
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                raw, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE/ENFILE: stop accepting briefly, keep serving
                log.warning(
                    "accept failed (%s); pausing accepts for %.1fs", exc, ACCEPT_PAUSE_ON_EMFILE
                )
                self._loop.remove_reader(self._listener.fileno())
                self._loop.call_later(ACCEPT_PAUSE_ON_EMFILE, self._resume_accept)
                return
            self._admit(raw, source_key(str(peer[0])))

    def _resume_accept(self) -> None:
        if self._listener is not None and self._loop is not None:
            self._loop.add_reader(self._listener.fileno(), self._accept)

    def _admit(self, raw: socket.socket, address: str) -> None:
        assert self._loop is not None
        cfg = self.config
        if self.unauth_by_address.get(address, 0) >= cfg.max_unauthenticated_per_address:
            self.refused += 1
            log.debug(
                "refusing %s: %d connections without hello",
                address,
                cfg.max_unauthenticated_per_address,
            )
            raw.close()
            return
        if len(self.unauthenticated) >= cfg.max_unauthenticated:
            _, oldest = next(iter(self.unauthenticated.items()))
            self.evicted += 1
            oldest.close("evicted: too many connections without hello")
        try:
            raw.setblocking(False)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = Session(
                self._loop,
                raw,
                self.context,
                address,
                self.clock,
                self._on_message,
                self._on_closed,
            )
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            log.debug("cannot start TLS with %s: %s", address, exc)
            return
        self.sessions[session.fd] = session
        self.unauthenticated[session.fd] = session
        self.unauth_by_address[address] = self.unauth_by_address.get(address, 0) + 1
        session.start()

    def _forget_unauthenticated(self, session: Session) -> None:
        if self.unauthenticated.pop(session.fd, None) is None:
            return
        left = self.unauth_by_address.get(session.address, 1) - 1
        if left > 0:
            self.unauth_by_address[session.address] = left
        else:
            self.unauth_by_address.pop(session.address, None)

    def _on_closed(self, session: Session, why: str) -> None:
        if self.unauthenticated.get(session.fd) is session:
            self._forget_unauthenticated(session)
        if self.sessions.get(session.fd) is session:
            del self.sessions[session.fd]
        if session.cluster:
            log.info("session %s ended: %s", session.describe(), why)
        else:
            log.debug("connection %s ended: %s", session.describe(), why)

    # --- messages ----------------------------------------------------------------------

    def _on_message(self, session: Session, msg: ClientMessage) -> None:
        persister = self._persister
        assert persister is not None
        cluster, site = session.cluster, session.site
        # the time the bytes arrived: never later than now, so leases end no later
        now = session.received_at
        if type(msg) is Heartbeat:
            if msg.nodes != session.nodes:
                log.info(
                    "%s/%s: node %s sees %d node(s) in its partition",
                    cluster,
                    site,
                    session.node,
                    msg.nodes,
                )
                session.nodes = msg.nodes
            decision = self.grants.heartbeat(cluster, site, msg.want, now)
            seq = msg.seq
        elif type(msg) is Hello:
            self._hello(session, msg)
            return
        elif type(msg) is Outdate or type(msg) is Current:
            self._record(session, msg, now)
            return
        else:
            decision = self.grants.release(cluster, site, now)
            seq = 0
            log.info("%s/%s: release from %s: %s", cluster, site, session.node, decision.reason)
        if decision.persist:
            log.info("cluster %s: %s", cluster, decision.reason)
            persister.changed(cluster)
        frame = encode_vote(
            seq,
            decision.granted,
            decision.epoch,
            decision.holder,
            self.config.lease_ms,
            self.outdates.fragment(cluster, site),
        )
        persister.send_when_durable(session, cluster, frame)

    def _record(self, session: Session, msg: Outdate | Current, now: float) -> None:
        """`outdate`/`current` from the holder: change the record, persist, then answer.
        From anyone else: `not_holder`, and the session stays open."""
        persister = self._persister
        assert persister is not None
        cluster, site, volume = session.cluster, session.site, msg.volume
        epoch = self.grants.holds(cluster, site, now)
        verb = "outdate" if type(msg) is Outdate else "current"
        if epoch is None:
            holder = self.grants.live_holder(cluster, now)
            why = (
                f"{verb} {volume}: site {site} does not hold a live lease of cluster "
                f"{cluster} (holder: {holder or 'none'})"
            )
            log.warning("%s/%s: refused: %s", cluster, site, why)
            persister.send_when_durable(session, cluster, error_frame(NOT_HOLDER, why))
            return
        answer = answer_record(self.outdates, cluster, site, msg, epoch)
        if answer.refused:
            log.warning("%s/%s: refused: %s", cluster, site, answer.why)
        else:
            log.info("cluster %s: %s (from %s)", cluster, answer.why, session.node)
        if answer.changed:
            persister.changed(cluster)
        persister.send_when_durable(session, cluster, answer.frame)

    def _hello(self, session: Session, hello: Hello) -> None:
        allowed = self.pins.get(session.fingerprint, frozenset())
        if (hello.cluster, hello.site) not in allowed:
            why = (
                f"certificate {session.fingerprint} is not pinned for site {hello.site!r} "
                f"of cluster {hello.cluster!r}"
            )
            log.warning(
                "unauthorized hello from %s (node %s): %s", session.address, hello.node, why
            )
            session.fail(UNAUTHORIZED, why)
            return
        self._forget_unauthenticated(session)
        session.stage = Stage.ESTABLISHED
        session.cluster, session.site, session.node = hello.cluster, hello.site, hello.node
        log.info("session %s authenticated", session.describe())
        session.send(encode(Welcome(self.config.heartbeat_ms, self.config.lease_ms)))

    # --- status (drorch.quorum.server_status) -----------------------------------------

    def status(self) -> list[dict[str, object]]:
        from drorch.quorum.server_status import status_rows

        return status_rows(self)

    def log_status(self) -> None:
        """SIGUSR1: one log line per cluster, plus the connection counters."""
        from drorch.quorum.server_status import log_status

        log_status(self)

    # --- deadlines ---------------------------------------------------------------------

    def _schedule_sweep(self) -> None:
        assert self._loop is not None
        idle = self.config.idle_deadline_ms / 1000
        self._sweeper = self._loop.call_later(min(0.5, idle / 4), self._sweep)

    def _sweep(self) -> None:
        now = self.clock.monotonic()
        for session in list(self.unauthenticated.values()):
            if now - session.accepted_at < HANDSHAKE_DEADLINE:
                break  # oldest first: the rest are younger
            session.close(f"no TLS handshake and hello within {HANDSHAKE_DEADLINE:g}s")
        idle = self.config.idle_deadline_ms / 1000
        for session in list(self.sessions.values()):
            if session.stage is Stage.ESTABLISHED:
                if now - session.last_heard >= idle:
                    session.close(f"no frame for {idle:g}s")
                elif now - session.frames_since >= 1.0:
                    rate = session.frames / (now - session.frames_since)
                    if rate > MAX_FRAMES_PER_SECOND:
                        session.fail(
                            BAD_FRAME,
                            f"{rate:.0f} frames per second; at most {MAX_FRAMES_PER_SECOND}",
                        )
                    session.frames, session.frames_since = 0, now
            elif (
                session.stage is Stage.CLOSING
                and session.close_at is not None
                and now >= session.close_at
            ):
                session.close("closed after an error")
        self._schedule_sweep()
