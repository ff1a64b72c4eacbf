"""The lease keeper: holds a site's quorum lease and calls back when it is gained or lost.

Two threads:

- the *session* thread connects, heartbeats every `heartbeat_ms` (from the welcome), feeds
  votes to the `LeaseTracker`, and reconnects with back-off after a failure;
- the *expiry* thread does nothing but report the loss when the lease runs out — on time,
  even while the session thread is stuck in a connect or handshake to an unreachable
  witness (a blackholed route can hold a connect for the whole timeout).

Every change of the tracker and the callback it causes happen under one lock, so callbacks
arrive in the order the tracker decided them, one at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from drorch.clock import Clock, SystemClock
from drorch.model.types import Witness
from drorch.quorum.client import MAX_RECONNECT_DELAY, QuorumConnection, QuorumError
from drorch.quorum.lease import Change, LeaseEvent, LeaseTracker
from drorch.quorum.messages import Vote

log = logging.getLogger("drorch.quorum.client")

Callback = Callable[[LeaseEvent], None]
EXPIRY_RECHECK = 0.25  # the expiry thread re-reads held_until at least this often


class LeaseKeeper:
    """Holds the site's lease. `holds()` is true only until the send time of the heartbeat
    that earned the last granted vote + lease − safety margin (see `LeaseTracker`).
    Callbacks run on the keeper's threads; keep them short (fence, flag, return)."""

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
        self._nodes = nodes
        self.tracker = LeaseTracker(safety_margin)
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max(reconnect_delay, MAX_RECONNECT_DELAY)
        self.last_error: str | None = None
        self.released = threading.Event()
        self._release_requested = threading.Event()
        self._failures = 0
        self._seq = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the tracker
        self._changes = threading.RLock()  # a tracker change and its callbacks, in order
        self._threads: list[threading.Thread] = []

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
        cert_name, key_name = witness.cert_for(site), witness.key_for(site)
        if cert_name is None or key_name is None:
            raise QuorumError("the witness config names no client cert/key for this site")
        cert, key = base_dir / cert_name, base_dir / key_name

        def connect() -> QuorumConnection:
            return QuorumConnection(
                witness.address, witness.fingerprint, cert, key, cluster, site, node, clock=clock
            )

        return cls(connect, on_gained, on_lost, clock=clock, nodes=nodes)

    # --- public ------------------------------------------------------------------------

    def holds(self) -> bool:
        with self._lock:
            return self.tracker.holds(self.clock.monotonic())

    @property
    def epoch(self) -> int:
        return self.tracker.epoch

    def start(self) -> None:
        for target, name in ((self._run, "quorum-lease"), (self._expiry, "quorum-expiry")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def release(self, timeout: float = 5.0) -> bool:
        """Stop asking for quorum and give it up on purpose (planned switch). The lease
        counts as lost at once; True when the witness acknowledged within `timeout`."""
        self.want = False

        def drop() -> list[LeaseEvent]:
            held = self.tracker.held_until is not None
            self.tracker.held_until = None
            self.tracker.forget_outstanding()
            if not held:
                return []
            now = self.clock.monotonic()
            return [LeaseEvent(Change.LOST, self.tracker.epoch, "released on purpose", at=now)]

        self._change(drop)
        self.released.clear()
        self._release_requested.set()
        return self.released.wait(timeout)

    # --- changes -----------------------------------------------------------------------

    def _change(self, decide: Callable[[], list[LeaseEvent]]) -> None:
        with self._changes:
            with self._lock:
                events = decide()
            for event in events:
                log.info("quorum %s: %s", event.change.value, event.reason)
                self._on[event.change](event)

    def _tick(self) -> list[LeaseEvent]:
        lost = self.tracker.tick(self.clock.monotonic())
        return [lost] if lost is not None else []

    # --- the expiry thread -------------------------------------------------------------

    def _expiry(self) -> None:
        while not self._stop.is_set():
            self._change(self._tick)
            with self._lock:
                until = self.tracker.held_until
            wait = EXPIRY_RECHECK
            if until is not None:
                wait = min(wait, max(0.0, until - self.clock.monotonic()))
            self._stop.wait(wait)

    # --- the session thread ------------------------------------------------------------

    def _run(self) -> None:
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
            self._stop.wait(min(delay, self.max_reconnect_delay))

    def _session(self) -> None:
        conn = self._connect()
        try:
            welcome = conn.welcome or conn.connect()
            self._failures = 0
            self.last_error = None  # it answers again (an error kept would say unreachable)
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

    def _receive_until(self, conn: QuorumConnection, next_send: float) -> None:
        """Take votes until it is time for the next heartbeat (or a release request)."""
        while not self._stop.is_set():
            if self._release_requested.is_set():
                self._release_requested.clear()
                conn.release()
                self.released.set()
            now = self.clock.monotonic()
            if now >= next_send:
                return
            vote = conn.poll_vote(min(next_send, now + 0.05))
            if vote is None:
                continue

            def apply(v: Vote = vote) -> list[LeaseEvent]:
                return self.tracker.vote(v, self.clock.monotonic())

            self._change(apply)
