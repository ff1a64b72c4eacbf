"""`LocalRunner`: run commands on this machine with subprocess.

Each command gets its own process group, so a timeout (or closing a stream) kills the
command and everything it spawned, not just the direct child.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence

from drorch.clock import Clock, SystemClock
from drorch.remote.base import (
    CommandFailed,
    CommandResult,
    CommandRunner,
    CommandTimeout,
    RunnerError,
)

# How long a killed process group gets to disappear before we stop waiting for it.
_REAP_SECONDS = 5.0
# How much of a streamed command's stderr is kept for the error message.
_STDERR_TAIL = 8192


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command's whole process group (it leads its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone
    except PermissionError:  # pragma: no cover - only if the child changed its credentials
        proc.kill()


class LocalRunner(CommandRunner):
    """Runs argv lists locally. `env` entries are added to the inherited environment;
    `cwd` is the working directory of every command."""

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._env = dict(env) if env else None
        self._cwd = cwd
        self._clock = clock or SystemClock()

    def _environ(self) -> dict[str, str] | None:
        if self._env is None:
            return None
        merged = dict(os.environ)
        merged.update(self._env)
        return merged

    def _popen(self, argv: Sequence[str], *, stdin: int | None) -> subprocess.Popen[bytes]:
        if not argv:
            raise ValueError("empty command")
        try:
            return subprocess.Popen(
                list(argv),
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self._cwd,
                env=self._environ(),
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise RunnerError(f"{argv[0]}: command not found") from exc
        except PermissionError as exc:
            raise RunnerError(f"{argv[0]}: permission denied") from exc

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        input: str | None = None,
        check: bool = False,
    ) -> CommandResult:
        proc = self._popen(argv, stdin=subprocess.PIPE if input is not None else None)
        data = input.encode("utf-8") if input is not None else None
        try:
            out, err = proc.communicate(input=data, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _kill_group(proc)
            with contextlib.suppress(subprocess.TimeoutExpired):  # unkillable (D state)
                proc.communicate(timeout=_REAP_SECONDS)
            raise CommandTimeout(
                f"{' '.join(argv)} did not finish within {timeout:g}s and was killed"
            ) from exc
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        finally:
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        stdout = out.decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
        result = CommandResult(tuple(argv), proc.returncode, stdout, stderr)
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def stream(self, argv: Sequence[str], *, timeout: float | None = None) -> Iterator[str]:
        """Yield stdout lines as they arrive. stderr is drained alongside (so a chatty
        command cannot block on a full pipe); if the command ends on its own with a
        non-zero status, CommandFailed is raised carrying that stderr."""
        proc = self._popen(argv, stdin=subprocess.DEVNULL)
        return self._lines(proc, argv, timeout)

    def _lines(
        self, proc: subprocess.Popen[bytes], argv: Sequence[str], timeout: float | None
    ) -> Iterator[str]:
        assert proc.stdout is not None and proc.stderr is not None
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        sel = selectors.DefaultSelector()
        sel.register(out_fd, selectors.EVENT_READ)
        sel.register(err_fd, selectors.EVENT_READ)
        pending = b""
        stderr = bytearray()
        open_fds = {out_fd, err_fd}
        try:
            while open_fds:
                wait = None if deadline is None else deadline - self._clock.monotonic()
                if wait is not None and wait <= 0:
                    raise CommandTimeout(
                        f"{' '.join(argv)} still running after {timeout:g}s; it was killed"
                    )
                for key, _ in sel.select(wait):
                    fd = int(key.fd)
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        sel.unregister(fd)
                        open_fds.discard(fd)
                    elif fd == err_fd:
                        stderr.extend(chunk)
                        del stderr[:-_STDERR_TAIL]
                    else:
                        pending += chunk
                        *lines, pending = pending.split(b"\n")
                        for line in lines:
                            yield line.decode("utf-8", "replace")
            if pending:
                yield pending.decode("utf-8", "replace")
            proc.wait(timeout=_REAP_SECONDS)
            if proc.returncode != 0:
                err = stderr.decode("utf-8", "replace")
                raise CommandFailed(CommandResult(tuple(argv), proc.returncode, "", err))
        finally:
            sel.close()
            if proc.poll() is None:
                _kill_group(proc)
            with contextlib.suppress(subprocess.TimeoutExpired):  # unkillable (D state)
                proc.wait(timeout=_REAP_SECONDS)
            proc.stdout.close()
            proc.stderr.close()
