"""A toy step family for engine tests: steps that append lines to a ledger file.

`ledger.add` is deliberately NOT idempotent (running it twice writes two lines), so
journal and resume tests can count how often it really ran. Its probe reads the ledger.
Import this module to register the family (the CLI does not load it).

    ledger.add      append "add TOKEN" (hold: sleep half before and half after writing)
    ledger.remove   append "remove TOKEN" (the undo of ledger.add)
    ledger.flaky    append "try TOKEN"; fail with CODE for the first FAILURES tries
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from drorch.runbook.steps.base import (
    Param,
    ParamKind,
    StepContext,
    StepFailed,
    StepResult,
    StepType,
    register,
)


def lines(path: str | Path) -> list[str]:
    p = Path(path)
    return p.read_text().splitlines() if p.exists() else []


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _s(args: Mapping[str, object], key: str) -> str:
    return str(args[key])


def _hold(args: Mapping[str, object]) -> float:
    value = args.get("hold", 0.0)
    return float(value) if isinstance(value, int | float) else 0.0


class _Ledger(StepType):
    verb = "add"
    params = (
        Param("ledger", ParamKind.STR, "The ledger file."),
        Param("token", ParamKind.STR, "What to write."),
        Param("hold", ParamKind.DURATION, "Time spent in the step.", default=0.0),
    )

    def _line(self, args: Mapping[str, object]) -> str:
        return f"{self.verb} {_s(args, 'token')}"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        done = self._line(args) in lines(_s(args, "ledger"))
        return StepResult(not done, f"would write {self._line(args)!r}",
                          checked=(f"ledger {_s(args, 'ledger')}",))  # fmt: skip

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return self._line(args) in lines(_s(args, "ledger"))

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        hold = _hold(args)
        ctx.progress.update(0, 2, "holding")
        if hold:
            ctx.sleep(hold / 2)
        _append(_s(args, "ledger"), self._line(args))
        ctx.progress.update(1, 2, "written")
        if hold:
            ctx.sleep(hold / 2)
        ctx.facts[f"wrote_{_s(args, 'token')}"] = True
        return StepResult(True, f"wrote {self._line(args)!r}", data={"token": args["token"]})


@register
class LedgerAdd(_Ledger):
    """Append "add TOKEN" to the ledger (not idempotent; probe reads the ledger)."""

    name = "ledger.add"
    undo = "ledger.remove"


@register
class LedgerRemove(_Ledger):
    """Append "remove TOKEN" to the ledger (the undo of ledger.add)."""

    name = "ledger.remove"
    verb = "remove"


@register
class LedgerFlaky(StepType):
    """Append "try TOKEN"; fail with `code` while fewer than `failures` tries are written."""

    name = "ledger.flaky"
    idempotent = True
    params = (
        Param("ledger", ParamKind.STR, "The ledger file."),
        Param("token", ParamKind.STR, "What to write."),
        Param("failures", ParamKind.INT, "How many tries fail.", default=0),
        Param("code", ParamKind.STR, "The failure's code.", default="flaky"),
    )

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        return StepResult(False, "would try")

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return False

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        line = f"try {_s(args, 'token')}"
        _append(_s(args, "ledger"), line)
        tries = lines(_s(args, "ledger")).count(line)
        failures = args["failures"]
        if isinstance(failures, int) and tries <= failures:
            raise StepFailed(_s(args, "code"), f"try {tries} failed")
        return StepResult(False, f"succeeded on try {tries}", data={"tries": tries})
