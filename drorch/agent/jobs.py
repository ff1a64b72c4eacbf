"""Work the agent starts but must not wait for: a runbook run (takeover, escalation) and
a fence of the lost site. Each runs on its own thread, so the loop keeps renewing its
lease and feeding its watchdog meanwhile; the loop polls `state` once per cycle.

A runbook job is an ordinary engine run (`drorch.runbook.engine`), journaled in the
state directory like any `drorch runbook run`. The agent layer may not import the
runbook layer (they are siblings), so the CLI hands the agent a `RunbookRunner`
(drorch/cli/agent_runbooks.py) that carries it out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from drorch.cancel import Cancel
from drorch.clock import Clock

log = logging.getLogger("drorch.agent")


@dataclass(frozen=True)
class JobState:
    """`ok` is None while running (or before start); `message` says what happened."""

    name: str
    started_at: float | None = None
    ended_at: float | None = None
    ok: bool | None = None
    message: str = "not started"

    @property
    def running(self) -> bool:
        return self.started_at is not None and self.ended_at is None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "running": self.running,
            "ok": self.ok,
            "message": self.message,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }


class Job:
    """One piece of work on a thread: `work()` returns (ok, message); an exception is a
    failure with its message (never a crash of the agent). Start it once."""

    def __init__(
        self,
        name: str,
        work: Callable[[], tuple[bool, str]],
        clock: Clock,
        cancel: Cancel | None = None,
    ) -> None:
        self.clock = clock
        self._cancel = cancel  # work that honours one (a runbook run) can be cancelled
        self._work = work
        self._lock = threading.Lock()
        self._state = JobState(name)
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> JobState:
        with self._lock:
            return self._state

    def start(self, message: str = "running") -> None:
        if self._thread is not None:
            raise RuntimeError(f"job {self._state.name} already started")
        with self._lock:
            self._state = JobState(self._state.name, self.clock.monotonic(), None, None, message)
        self._thread = threading.Thread(target=self._run, name=self._state.name, daemon=True)
        self._thread.start()

    def run_here(self, message: str = "running") -> JobState:
        """Run on the caller's thread (FakeClock tests, where time must not pass)."""
        with self._lock:
            self._state = JobState(self._state.name, self.clock.monotonic(), None, None, message)
        self._run()
        return self.state

    def _run(self) -> None:
        try:
            ok, message = self._work()
        except Exception as exc:  # a failing job is reported, never a dead agent
            log.error("job %s failed: %s: %s", self._state.name, type(exc).__name__, exc)
            log.debug("job %s", self._state.name, exc_info=True)  # the trace only with -v
            ok, message = False, f"{type(exc).__name__}: {exc}"
        with self._lock:
            s = self._state
            self._state = JobState(s.name, s.started_at, self.clock.monotonic(), ok, message)

    def cancel(self, reason: str) -> bool:
        """Ask running work to stop (a runbook run: before its next step or retry); True
        when it was asked, False when it is not running or cannot be cancelled."""
        if self._cancel is None or not self.state.running:
            return False
        first = self._cancel.reason is None
        self._cancel.set(reason)
        return first

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


RunbookRunner = Callable[[Path, Mapping[str, object], Cancel], tuple[bool, str]]
"""Run the runbook at this path with these params (those it declares) until done or
cancelled through the token; (ok, message)."""


@dataclass(frozen=True)
class Runbooks:
    """What the CLI gives the agent: `run` carries a runbook out through the engine;
    `check` loads and validates one (None when fine, else the problems); `busy`, below."""

    run: RunbookRunner
    check: Callable[[Path], str | None]
    # the run holding the cluster's run lock in the agent's state directory ("" when its
    # id is unreadable), None when none does: a run stops guests on purpose
    busy: Callable[[], str | None] = lambda: None


def find_runbook(path: str, base_dir: Path) -> Path | None:
    """`agent.runbook`: absolute, else beside the config file, else in the current
    directory, else drorch's own runbooks (drorch.shipped_runbooks: `runbooks/X.yaml`
    is looked up in the installed package's runbooks, or a source checkout's)."""
    from drorch.shipped_runbooks import shipped_runbooks_dir

    p = Path(path)
    if p.is_absolute():
        return p if p.exists() else None
    shipped = shipped_runbooks_dir()
    roots = [base_dir, Path.cwd(), *([shipped.parent] if shipped is not None else [])]
    for root in roots:
        if (root / p).exists():
            return root / p
    return None
