"""A ScriptedRunner that also plays the node-side chores the driver does around each
operation — `drbdsetup get-gi` (from a fixture) and the epoch file (`cat`, and the atomic
`sh -c` write, kept in memory) — so scripts can focus on the DRBD operation under test.
The chores themselves are scripted explicitly in dedicated tests."""

from __future__ import annotations

from collections.abc import Sequence

from drorch.remote.base import CommandFailed, CommandResult
from drorch.testing.runner import ScriptedRunner
from tests.drbd.conftest import fixture_text


class NodeScriptedRunner(ScriptedRunner):
    def __init__(self, script: Sequence[object] = ()) -> None:
        super().__init__(script)  # type: ignore[arg-type]
        self.files: dict[str, str] = {}

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        input: str | None = None,
        check: bool = False,
    ) -> CommandResult:
        cmd = tuple(argv)
        if list(argv[:2]) == ["drbdsetup", "get-gi"]:
            self.calls.append(cmd)
            return CommandResult(cmd, 0, fixture_text("get-gi.txt"), "")
        if len(argv) == 2 and argv[0] == "cat" and argv[1].endswith((".epoch", ".net")):
            self.calls.append(cmd)
            if argv[1] in self.files:
                return CommandResult(cmd, 0, self.files[argv[1]], "")
            return CommandResult(cmd, 1, "", f"cat: {argv[1]}: No such file or directory\n")
        if argv[:2] == ["sh", "-c"] and len(argv) == 7 and argv[5].endswith((".epoch", ".net")):
            self.calls.append(cmd)
            self.files[argv[5]] = f"{argv[6]}\n"
            return CommandResult(cmd, 0, "", "")
        result = super().run(argv, timeout=timeout, input=input, check=check)
        if check and not result.ok:  # pragma: no cover - ScriptedRunner raises already
            raise CommandFailed(result)
        return result
