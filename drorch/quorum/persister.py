"""Group commit of the grant state: every grant change is durable before the vote that
announces it (or any later vote of that cluster) is sent.

The snapshot is taken on the event-loop thread; the slow part (serialise, write, fsync,
rename, fsync the folder) runs on a worker thread so the loop keeps answering the other
clusters meanwhile. A vote waits only for the version at which *its cluster* last changed;
votes of clusters with nothing pending go out at once. One write runs at a time; changes
made during a write are picked up by the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from drorch.quorum.state import QuorumState

log = logging.getLogger("drorch.quorumd")

SLOW_WRITE = 0.5  # seconds; a persist slower than this is logged (votes wait for it)


class PersistFailed(Exception):
    """The state could not be made durable: the daemon must stop granting."""


class Sender(Protocol):
    def send(self, frame: bytes) -> None: ...


class Persister:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        snapshot: Callable[[], QuorumState],
        write: Callable[[QuorumState], None],
    ) -> None:
        self._loop = loop
        self._snapshot = snapshot
        self._write = write
        self.version = 0  # grant changes made in memory
        self.durable = 0  # grant changes on disk
        self.writes = 0
        self._dirty: dict[str, int] = {}  # cluster -> version of its last change
        self._writing = False
        self._waiters: list[tuple[int, Sender, bytes]] = []
        self.failed: BaseException | None = None
        self.failed_event = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()

    def changed(self, cluster: str) -> None:
        self.version += 1
        self._dirty[cluster] = self.version
        self._start()

    def send_when_durable(self, session: Sender, cluster: str, frame: bytes) -> None:
        needed = self._dirty.get(cluster, 0)
        if needed <= self.durable:
            session.send(frame)
        elif self.failed is None:
            self._waiters.append((needed, session, frame))
        # after a failure nothing that depends on the lost change is ever sent

    def _start(self) -> None:
        if self._writing or self.failed is not None or self.durable >= self.version:
            return
        self._writing = True
        self.idle.clear()
        target = self.version
        state = self._snapshot()
        future = self._loop.run_in_executor(None, self._timed_write, state)
        future.add_done_callback(lambda f: self._done(f, target))

    def _timed_write(self, state: QuorumState) -> float:
        started = time.monotonic()  # a measurement for the log, not a decision
        self._write(state)
        return time.monotonic() - started

    def _done(self, future: asyncio.Future[float], target: int) -> None:
        self._writing = False
        exc = future.exception()
        if exc is not None:
            self.failed = exc
            self._waiters.clear()
            self.failed_event.set()
            self.idle.set()
            log.critical("cannot persist the quorum state, granting stops: %s", exc)
            return
        took = future.result()
        if took > SLOW_WRITE:
            log.warning("persisting the state took %.3fs; votes waited for it", took)
        self.writes += 1
        self.durable = target
        if self._waiters:
            ready = [w for w in self._waiters if w[0] <= target]
            self._waiters = [w for w in self._waiters if w[0] > target]
            for _, session, frame in ready:
                session.send(frame)
        if self.durable < self.version:
            self._start()
        else:
            self._dirty.clear()
            self.idle.set()
