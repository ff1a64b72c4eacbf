"""A monitor that answers from a script, for agent and runbook tests."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from drorch.monitor.base import CheckResult, CheckStatus, Monitor


class ScriptedMonitor(Monitor):
    """Returns the scripted results in order, then repeats the last one forever."""

    def __init__(self, name: str, results: Iterable[CheckResult | CheckStatus], level: int = 1):
        super().__init__(name, level, timeout=1.0)
        self._script: deque[CheckResult] = deque(
            r if isinstance(r, CheckResult) else CheckResult(r, f"scripted {r.value}")
            for r in results
        )
        if not self._script:
            raise ValueError("a scripted monitor needs at least one result")
        self.calls = 0

    def check(self) -> CheckResult:
        self.calls += 1
        return self._script.popleft() if len(self._script) > 1 else self._script[0]
