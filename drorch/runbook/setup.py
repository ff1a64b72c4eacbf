"""What a run needs before its first step: resolved params, options, a run id, output.

`resolve_params` types `--param k=v` values against the runbook header and reports
every problem at once; `RunOptions` carries the operator's choices (dry run, gates,
force, data-loss acknowledgement) into the engine.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from drorch.cancel import Cancel
from drorch.clock import Clock
from drorch.runbook.gates import Confirmer, operator_name
from drorch.runbook.load_fields import did_you_mean
from drorch.runbook.model import Runbook
from drorch.runbook.steps.base import NullProgress, Progress


class Output:
    """Where the engine tells the operator what happens (the CLI prints; tests record).
    `progress(label)` gives the live line of the running step; `done()` ends it."""

    def line(self, text: str) -> None:
        return None

    def progress(self, label: str) -> Progress:
        return NullProgress()

    def done(self) -> None:
        return None


class RecordingOutput(Output):
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.updates: list[tuple[str, float, float, str]] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def progress(self, label: str) -> Progress:
        outer = self

        class _P:
            def update(self, done: float, total: float, detail: str = "") -> None:
                outer.updates.append((label, done, total, detail))

            def note(self, text: str) -> None:
                outer.lines.append(f"  {text}")

        return _P()


@dataclass
class RunOptions:
    """`confirmer=None` means nobody can answer a gate: a runbook with gates is refused
    before it starts (the CLI passes a TTY confirmer, or YesConfirmer for --yes)."""

    dry_run: bool = False
    force: bool = False
    accept_data_loss: bool = False
    confirmer: Confirmer | None = None
    output: Output = field(default_factory=Output)
    user: str = field(default_factory=operator_name)
    config_path: str = ""
    host: str = field(default_factory=socket.gethostname)
    # set from another thread (the agent, when its site fences itself): the run stops
    # before its next step or retry, as failed with code "cancelled", without rollback
    cancel: Cancel | None = None


class RunRefused(RuntimeError):
    """The run did not start (or resume): locked cluster, interrupted run, no way to
    answer gates, nothing to resume. `code` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ParamError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def resolve_params(runbook: Runbook, given: Mapping[str, object]) -> dict[str, object]:
    """The runbook's params: given values (typed), else defaults. ParamError lists
    unknown names (with a suggestion), bad values and missing required params."""
    problems: list[str] = []
    out: dict[str, object] = {}
    declared = {p.name: p for p in runbook.params}
    for name, value in given.items():
        param = declared.get(name)
        if param is None:
            known = ", ".join(declared) or "none"
            hint = did_you_mean(name, declared) or f" (params: {known})"
            problems.append(f"unknown param {name!r}{hint}")
            continue
        try:
            out[name] = param.coerce(value)
        except ValueError as exc:
            problems.append(f"param {name!r}: {exc}")
    for param in runbook.params:
        if param.name in out or param.name in given:
            continue
        if param.required:
            problems.append(f"param {param.name!r} is required (--param {param.name}=...)")
        else:
            out[param.name] = param.default
    if problems:
        raise ParamError(problems)
    return out


def new_run_id(clock: Clock) -> str:
    """Sortable and unique: UTC start time plus 4 random hex digits."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock.now()))
    return f"{stamp}-{secrets.token_hex(2)}"


def jsonable(value: object) -> object:
    """Params as the journal stores them (tuples become lists)."""
    if isinstance(value, tuple):
        return list(value)
    return value
