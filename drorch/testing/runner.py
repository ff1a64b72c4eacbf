"""A CommandRunner that replays a script and fails the test on any unexpected command.

    runner = ScriptedRunner([
        Expect(["drbdadm", "up", "r0"]),
        Expect(["drbdsetup", "status", "r0", "--json"], stdout=fixture("up.json")),
    ])
    ...
    runner.assert_done()

Commands must arrive in order. `Expect(..., repeat=True)` matches any number of times
(useful for polling) until a later expectation matches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from drorch.remote.base import CommandFailed, CommandResult, CommandRunner, CommandTimeout


class UnexpectedCommand(AssertionError):
    """The code under test ran a command the script did not expect."""


@dataclass
class Expect:
    argv: Sequence[str]
    stdout: str = ""
    stderr: str = ""
    returncode: int = 0
    timeout: bool = False  # raise CommandTimeout instead of returning
    repeat: bool = False
    input: str | None = field(default=None)  # if set, the stdin the command must receive


class ScriptedRunner(CommandRunner):
    def __init__(self, script: Sequence[Expect] = ()) -> None:
        self.script: list[Expect] = list(script)
        self.calls: list[tuple[str, ...]] = []

    def expect(self, *items: Expect) -> None:
        self.script.extend(items)

    def _match(self, argv: Sequence[str], input: str | None) -> Expect:
        cmd = tuple(argv)
        self.calls.append(cmd)
        while self.script:
            head = self.script[0]
            if tuple(head.argv) == cmd:
                if head.input is not None and head.input != input:
                    raise UnexpectedCommand(f"{cmd}: stdin {input!r}, expected {head.input!r}")
                if not head.repeat:
                    self.script.pop(0)
                return head
            if head.repeat:
                self.script.pop(0)
                continue
            raise UnexpectedCommand(f"ran {list(cmd)}, expected {list(head.argv)}")
        raise UnexpectedCommand(f"ran {list(cmd)}, but the script is finished")

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        input: str | None = None,
        check: bool = False,
    ) -> CommandResult:
        exp = self._match(argv, input)
        if exp.timeout:
            raise CommandTimeout(f"{' '.join(argv)} timed out after {timeout}s")
        result = CommandResult(tuple(argv), exp.returncode, exp.stdout, exp.stderr)
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def stream(self, argv: Sequence[str], *, timeout: float | None = None) -> Iterator[str]:
        exp = self._match(argv, None)
        if exp.timeout:
            raise CommandTimeout(f"{' '.join(argv)} timed out after {timeout}s")
        yield from exp.stdout.splitlines()

    def assert_done(self) -> None:
        """Fail if expected (non-repeating) commands were never run."""
        left = [e.argv for e in self.script if not e.repeat]
        if left:
            raise AssertionError(f"expected commands never ran: {left}")
