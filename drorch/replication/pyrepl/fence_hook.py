"""The fence-peer hook of a frozen sync primary (`repl serve --fence-peer-cmd CMD`).

While the engine is frozen (freeze.py) one thread runs CMD, retrying every
`RETRY_INTERVAL` seconds until the freeze ends some other way or the daemon stops. The
command's exit code says what happened (the same codes as DRBD's fence-peer handler
where they overlap; `drorch repl fence-peer` speaks them):

- 0: the peer is recorded Outdated, durably (the witness's record): resume;
- 5: the peer's site holds the lease: this primary is stale, acknowledge nothing (the
  CLI's stale-epoch code);
- anything else (3 not the holder, 1 witness unreachable, a timeout): stay frozen, retry.

`--unfence-peer-cmd CMD` runs once the peer is UpToDate again (resync finished, or back
in sync), so the witness forgets its record; a failure there only leaves the peer marked
outdated, the safe side. It gets DRORCH_OUTDATE_RECORD, the serial of the last record
the fence-peer hook reported ("(record N)" in its output): the witness clears only that
write of the record, so an unfence that arrives after the peer was lost again and a new
outdate re-wrote the record leaves it standing (the hooks are separate processes on
separate connections: nothing else orders them). A hook's record that lands after the
freeze already ended with the peer back in sync is cleared the same way at once.

The command gets DRORCH_VOLUME (the volume) and DRORCH_FREEZE_REASON in its environment.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import threading
from typing import TYPE_CHECKING

from drorch.replication.pyrepl import freeze

if TYPE_CHECKING:
    from drorch.replication.pyrepl.engine import Engine

log = logging.getLogger("drorch.pyrepl")

RETRY_INTERVAL = 1.0
HOOK_TIMEOUT = 30.0
EXIT_OUTDATED = 0
EXIT_STALE = 5
UNFENCE_ATTEMPTS = 3
_RECORD = re.compile(r"\(record (\d+)\)")


class FenceHook:
    def __init__(self, engine: Engine, command: str, unfence: str | None = None) -> None:
        self.engine = engine
        self.argv = shlex.split(command)
        self.unfence_argv = shlex.split(unfence) if unfence else None
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # the serial of the witness record the hook last reported (None: not known, e.g.
        # since a restart: the unfence then clears whatever record stands)
        self.record: int | None = None

    def kick(self) -> None:
        """The engine froze (caller holds its lock): start the hook thread unless running."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="pyrepl-fence", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(2.0)  # a daemon thread: a hook still running is left

    def _frozen(self) -> str | None:
        with self.engine.cond:
            f = self.engine.freeze
            return f.reason if f.frozen and f.stale is None else None

    def _run(self) -> None:
        eng = self.engine
        attempt = 0
        while not self.stopping.is_set():
            reason = self._frozen()
            if reason is None:
                return
            attempt += 1
            code, output = self._call(self.argv, reason)
            now = eng.clock.monotonic()
            late = False
            with eng.cond:
                eng.freeze.hook = {"exit": code, "output": output, "attempt": attempt}
                if code == EXIT_OUTDATED:
                    found = _RECORD.search(output)
                    self.record = int(found.group(1)) if found else None
                if code == EXIT_OUTDATED and eng.freeze.frozen:
                    items = freeze.peer_outdated(eng, f"fence-peer hook: {output or 'exit 0'}")
                elif code == EXIT_OUTDATED:
                    items = []
                    # the peer came back in sync while the hook ran: its record is wrong
                    late = not eng.meta.peer_outdated and eng.freeze.stale is None
                elif code == EXIT_STALE:
                    items = freeze.make_stale(eng, f"fence-peer hook: {output or 'exit 5'}")
                else:
                    items = []
                    log.warning(
                        "%s: fence-peer hook exit %s (attempt %d): %s; staying frozen",
                        eng.meta.name,
                        code,
                        attempt,
                        output,
                    )
            freeze.complete(eng, items)
            if late:
                log.info("%s: the outdate landed after the peer was back in sync", eng.meta.name)
                self.unfence()
            if code in (EXIT_OUTDATED, EXIT_STALE):
                return
            left = RETRY_INTERVAL - (eng.clock.monotonic() - now)
            if left > 0 and self.stopping.wait(left):
                return

    def _call(
        self, argv: list[str], reason: str, extra: dict[str, str] | None = None
    ) -> tuple[int | None, str]:
        env = {**os.environ, "DRORCH_VOLUME": self.engine.meta.name, **(extra or {})}
        env["DRORCH_FREEZE_REASON"] = reason
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=HOOK_TIMEOUT, env=env, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        lines = (done.stdout.strip() or done.stderr.strip()).splitlines()
        return done.returncode, (lines[-1] if lines else "")[:500]

    def unfence(self) -> None:
        """The peer is UpToDate again: clear the outdate record (in the background)."""
        if self.unfence_argv is None:
            return
        argv = self.unfence_argv
        # the record as of now: a later outdate gives it a new serial, which this keeps
        extra = {} if self.record is None else {"DRORCH_OUTDATE_RECORD": str(self.record)}

        def run() -> None:
            for attempt in range(1, UNFENCE_ATTEMPTS + 1):
                code, output = self._call(argv, "peer UpToDate again", extra)
                if code == 0:
                    log.info("%s: unfence-peer: %s", self.engine.meta.name, output)
                    return
                log.warning(
                    "%s: unfence-peer exit %s (attempt %d): %s",
                    self.engine.meta.name,
                    code,
                    attempt,
                    output,
                )
                if self.stopping.wait(RETRY_INTERVAL):
                    return

        threading.Thread(target=run, name="pyrepl-unfence", daemon=True).start()
