"""Every call the agent loop makes to observe (replicator status, guest state) within a
budget: one hung replicator or hypervisor must not stall the loop, or the watchdog
starves and a healthy site fences itself (sbd's inquisitor: each servant answers within
its timeout or counts as not reporting; Patroni bounds its DCS and Postgres calls).

The budget is per cycle and derived from the agent's timings (`observe_budget`): the
loop feeds at most every `heartbeat + budget` seconds, which stays below the watchdog
timeout with half its slack left (checked at start by `drorch.model.timing`). A call
runs on its own thread; past the cycle's deadline it is **unobserved** for this cycle:
the caller gets `Unobserved` (with the reason), never a healthy answer. A call that hangs
is not started again beside itself: later cycles see it still pending and are
unobserved at once, until it answers (its late answer is then used) — so a hung daemon
costs one thread, not one per cycle. A call first asked after the deadline (one hung call
ate it) still gets a tenth of the budget. What to make of an unobserved thing is the
caller's rule (drorch.agent.resources, drorch.agent.loop).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from drorch.model.types import Cluster

T = TypeVar("T")


def observe_budget(cluster: Cluster) -> float:
    """Seconds the loop may wait per cycle for what it observes: half of the smaller of
    the agent heartbeat and the watchdog's slack past one heartbeat. A cycle whose calls
    all hang then ends `budget` late (plus a tenth of it for each further call that hangs
    for the first time in that cycle), and feeds stay about `heartbeat + budget` apart, at
    most about `(watchdog_timeout + heartbeat) / 2`: inside the watchdog timeout."""
    h, w = cluster.agent.heartbeat, cluster.fencing.watchdog_timeout
    return max(min(h, w - h), 0.0) / 2


class Unobserved(Exception):
    """A call that did not answer within the cycle's budget (it may still be running)."""


@dataclass
class _Call:
    started: float
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class Bounded:
    """The loop's calls to observe, each within the current cycle's deadline. `budget`
    None calls inline (unit tests under a FakeClock, where no thread may wait)."""

    def __init__(
        self, budget: float | None, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.budget = budget
        self.monotonic = monotonic
        self._began = self._deadline = 0.0
        self._pending: dict[str, _Call] = {}
        self._lock = threading.Lock()
        self.unobserved: dict[str, str] = {}  # this cycle: key -> why (agent status)
        self.since: dict[str, float] = {}  # key -> when it stopped answering

    def begin(self) -> None:
        """A new cycle: its deadline starts now."""
        self._began = self.monotonic()
        self._deadline = self._began + (self.budget or 0.0)
        self.unobserved = {}

    def hung_for(self, key: str) -> float | None:
        since = self.since.get(key)
        return None if since is None else self.monotonic() - since

    def call(self, key: str, fn: Callable[[], T]) -> T:
        if self.budget is None:
            return fn()
        with self._lock:
            c = self._pending.get(key)
            if c is None:
                c = self._pending[key] = _Call(self.monotonic())
                threading.Thread(target=self._run, args=(c, fn), name=key, daemon=True).start()
        if c.started >= self._began:  # asked this cycle: wait up to its deadline, and
            # a tenth of the budget at least (one hung call must not make every call
            # after it unobserved)
            floor = (self.budget or 0.0) / 10
            c.done.wait(max(floor, self._deadline - self.monotonic()))
        if not c.done.is_set():
            waited = self.monotonic() - c.started
            since = self.since.setdefault(key, c.started)
            why = (
                f"no answer within the loop's budget of {self.budget:g}s (asked"
                f" {waited:.1f}s ago, unanswered for {self.monotonic() - since:.1f}s)"
            )
            self.unobserved[key] = why
            raise Unobserved(f"{key}: {why}")
        with self._lock:
            self._pending.pop(key, None)
        self.since.pop(key, None)
        if c.error is not None:
            raise c.error
        return c.result  # type: ignore[no-any-return]

    @staticmethod
    def _run(c: _Call, fn: Callable[[], Any]) -> None:
        try:
            c.result = fn()
        except BaseException as exc:  # handed to the caller that waits for it
            c.error = exc
        finally:
            c.done.set()


def unobserved_health(
    ok: bool, why: str, hung: dict[str, float], budget: float
) -> tuple[bool, str]:
    """The health rule for what this node runs as primary but cannot observe (a local
    replica last seen primary, a guest last seen running): a health failure with its own
    recovery budget (`budget`, the agent's member_timeout), not an instant self-fence.
    Within it the watchdog is still fed (the replicator may answer again, as a restart
    within budget may succeed); past it the feed stops and the watchdog fences the site,
    as for a level-1 monitor whose recovery ran out. Quorum still gates it meanwhile: an
    unobserved primary counts as primary."""
    if not hung:
        return ok, why
    late = [
        f"{k} unobserved for {s:.1f}s (budget {budget:g}s)" for k, s in hung.items() if s > budget
    ]
    if late:
        return False, "; ".join(late) + ("" if ok else f"; {why}")
    note = ", ".join(
        f"{k} unobserved for {s:.1f}s of its {budget:g}s budget" for k, s in hung.items()
    )
    return ok, f"{why}; {note}"
