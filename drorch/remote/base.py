"""The `CommandRunner` seam: run a command on a node, locally or over SSH."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class RunnerError(Exception):
    """Base of every runner failure."""


class CommandFailed(RunnerError):
    """A command exited non-zero and the caller asked for `check=True`."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        msg = result.stderr.strip() or result.stdout.strip() or "(no output)"
        super().__init__(f"{' '.join(result.argv)} exited {result.returncode}: {msg}")


class CommandTimeout(RunnerError):
    """A command did not finish within its timeout; it was killed."""


class RunnerConnectionError(RunnerError):
    """The node could not be reached (after retries, for SSH)."""


class CommandRunner(ABC):
    """Runs argv lists on one node. Implementations never go through a shell unless the
    caller passes `["sh", "-c", ...]` explicitly."""

    @abstractmethod
    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        input: str | None = None,
        check: bool = False,
    ) -> CommandResult:
        """Run to completion and capture stdout/stderr as text.

        Raises CommandTimeout if it runs longer than `timeout` (the command is killed),
        RunnerConnectionError if the node cannot be reached, and CommandFailed on a
        non-zero exit when `check` is true."""

    @abstractmethod
    def stream(self, argv: Sequence[str], *, timeout: float | None = None) -> Iterator[str]:
        """Yield stdout lines (without newline) as the command prints them, e.g.
        `drbdsetup events2`. Closing the iterator kills the command. Raises
        CommandTimeout when `timeout` elapses, RunnerConnectionError as for run()."""

    def close(self) -> None:  # noqa: B027 - optional hook, most runners hold nothing
        """Release connections. Idempotent."""
