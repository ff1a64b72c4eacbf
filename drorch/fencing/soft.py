"""`SoftWatchdog`: the deadline kept by a separate supervisor process (fencing/softdog.py).

For machines without a hardware or kernel watchdog (this one, the lab). The supervisor
runs in its own session, so killing or stopping the agent leaves it running; when it is
not fed in time it kills the node's resource processes and guests and runs the
configured self-fence commands (demote or freeze the volumes, or anything else).

What it cannot do, and a hardware watchdog can: survive a kill -9 of the supervisor
itself, or a kernel that hangs. `fencing.watchdog: device` is the choice where a real
/dev/watchdog exists.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drorch.fencing.watchdog import Armed, WatchdogDevice, WatchdogError

START_TIMEOUT = 10.0


@dataclass(frozen=True)
class SelfFenceActions:
    """What the supervisor does when it fires."""

    kill_pids: tuple[int, ...] = ()
    kill_pidfiles: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    log: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        out: list[str] = []
        for pid in self.kill_pids:
            out += ["--kill-pid", str(pid)]
        for pf in self.kill_pidfiles:
            out += ["--kill-pidfile", pf]
        for cmd in self.commands:
            out += ["--command", cmd]
        if self.log:
            out += ["--log", self.log]
        return out


class SoftWatchdog(WatchdogDevice):
    def __init__(
        self, actions: SelfFenceActions | None = None, *, stderr: Path | None = None
    ) -> None:
        self._actions = actions or SelfFenceActions()
        self._stderr = stderr
        self._proc: subprocess.Popen[bytes] | None = None
        self._released: list[subprocess.Popen[bytes]] = []  # closed without disarming
        self._timeout = 0.0

    @property
    def name(self) -> str:
        return "soft"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def arm(self, timeout: float) -> Armed:
        if self._proc is not None:
            raise WatchdogError("the soft watchdog is already armed")
        argv = [sys.executable, "-m", "drorch.fencing.softdog", "--timeout", f"{timeout:g}"]
        env = {**os.environ, **self._actions.extra_env}
        err = open(self._stderr, "ab") if self._stderr else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [*argv, *self._actions.argv()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
                env=env,
            )
        except OSError as e:
            raise WatchdogError(f"cannot start the soft watchdog: {e}") from e
        finally:
            if err is not subprocess.DEVNULL:
                err.close()  # type: ignore[union-attr]
        line = self._read_line(START_TIMEOUT)
        if not line.startswith("armed "):
            self._kill()
            raise WatchdogError(f"the soft watchdog did not arm: {line or 'no answer'}")
        self._timeout = float(line.split()[1])
        return Armed(self._timeout, self.name)

    def _read_line(self, timeout: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return ""
        return self._proc.stdout.readline().decode(errors="replace").strip()

    def _send(self, data: bytes) -> None:
        if self._proc is None or self._proc.stdin is None:
            raise WatchdogError("the soft watchdog is not armed")
        if self._proc.poll() is not None:
            raise WatchdogError(f"the soft watchdog exited (code {self._proc.returncode})")
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise WatchdogError(f"the soft watchdog is gone: {e}") from e

    def keepalive(self) -> float:
        self._send(b"k")
        # The supervisor answers at once; waiting longer than a quarter of the timeout
        # means it is stuck, and a stuck supervisor guarantees nothing.
        line = self._read_line(max(0.2, self._timeout / 4))
        if not line.startswith("ok "):
            raise WatchdogError(
                f"the soft watchdog did not acknowledge a feed: {line or 'no answer'}"
            )
        return float(line.split()[1]) / 1000.0

    def disarm(self) -> None:
        if self._proc is None:
            return
        self._send(b"V")
        line = self._read_line(max(1.0, self._timeout))
        proc = self._proc
        if line != "disarmed":
            raise WatchdogError(f"the soft watchdog refused the magic close: {line or 'no answer'}")
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired as e:  # pragma: no cover - it exits right after
            raise WatchdogError("the soft watchdog did not exit after the magic close") from e
        self._close_pipes()
        self._proc = None

    def close(self) -> None:
        """Drop the pipes without the magic close: the supervisor keeps the deadline and
        fires, as after a crash. The process is left to do so; it is not waited for."""
        self._close_pipes()
        if self._proc is not None:
            self._released.append(self._proc)
        self._proc = None

    def wait_fired(self, timeout: float) -> int | None:
        """For tests and `watchdog test`: wait for the supervisor (armed or released) to
        exit, and return its exit code (2 = it fired); None if it is still running."""
        proc = self._proc or (self._released[-1] if self._released else None)
        if proc is None:
            return None
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def _close_pipes(self) -> None:
        if self._proc is None:
            return
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=5)
            self._close_pipes()
            self._proc = None


def fired_records(log: Path) -> Sequence[str]:
    """Lines the supervisor appended to its log when it fired."""
    try:
        return log.read_text().splitlines()
    except FileNotFoundError:
        return ()
