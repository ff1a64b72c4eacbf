"""A ScriptedRunner that also answers `drbdsetup get-gi` from a fixture, so scripts can
focus on the operation under test (get-gi itself is scripted explicitly elsewhere)."""

from __future__ import annotations

from collections.abc import Sequence

from drorch.remote.base import CommandResult
from drorch.testing.runner import ScriptedRunner
from tests.drbd.conftest import fixture_text


class GiScriptedRunner(ScriptedRunner):
    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        input: str | None = None,
        check: bool = False,
    ) -> CommandResult:
        if list(argv[:2]) == ["drbdsetup", "get-gi"]:
            self.calls.append(tuple(argv))
            return CommandResult(tuple(argv), 0, fixture_text("get-gi.txt"), "")
        return super().run(argv, timeout=timeout, input=input, check=check)
