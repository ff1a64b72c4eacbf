"""A loaded runbook: frozen dataclasses built by `drorch.runbook.load`.

    name: hurricane-planned-migration
    description: Move everything to the recovery site before the storm.
    params:
      to: {type: str, default: B, doc: The site to move to.}
    steps:
      - id: quorum-held
        action: check.quorum
        with: {site: "${params.to}"}
        timeout: 30s
        retry: {attempts: 3, backoff: 2s, codes: [witness-unreachable]}
      - id: go
        action: plan.execute
        with: {kind: migration, to: "${params.to}"}
        confirm: "Move every VM to ${params.to}?"
        on_failure: rollback

`with:` strings may name runbook params: a whole-string `${params.x}` keeps the
param's type; inside a longer string it is interpolated. `$${` is a literal `${`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from drorch.model.reports import Position
from drorch.runbook.steps.base import Param
from drorch.runbook.when import Condition


class OnFailure(StrEnum):
    ABORT = "abort"  # stop here; leave everything as it is for a person to decide
    ROLLBACK = "rollback"  # run the completed steps' rollbacks in reverse, then stop
    CONTINUE = "continue"  # record the failure and go on (later `when:` can test it)


@dataclass(frozen=True)
class Retry:
    """Retry a failed attempt whose code is in `codes`, waiting `backoff` (doubling by
    `multiplier`, at most `max_backoff`), for at most `attempts` attempts and never
    past `deadline` seconds since the first attempt (the total deadline)."""

    attempts: int = 1
    backoff: float = 1.0
    multiplier: float = 2.0
    max_backoff: float = 30.0
    codes: tuple[str, ...] = ()
    deadline: float | None = None


@dataclass(frozen=True)
class RunbookStep:
    """One step. `args` is the raw `with:` (may reference params); `rollback` are the
    steps that undo this one once it completed; `undo` means "the action's own undo"."""

    id: str
    action: str
    args: Mapping[str, object] = field(default_factory=dict)
    when: Condition | None = None
    timeout: float | None = None
    retry: Retry = field(default_factory=Retry)
    confirm: str | None = None
    on_failure: OnFailure = OnFailure.ABORT
    rollback: tuple[RunbookStep, ...] = ()
    undo: bool = False
    position: Position = field(default_factory=lambda: Position("<runbook>", 1, 1))

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"id": self.id, "action": self.action, "with": dict(self.args)}
        if self.when is not None:
            out["when"] = self.when.text
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.retry.attempts > 1:
            out["retry"] = {"attempts": self.retry.attempts, "on": list(self.retry.codes)}
        if self.confirm is not None:
            out["confirm"] = self.confirm
        out["on_failure"] = self.on_failure.value
        if self.undo:
            out["rollback"] = "undo"
        elif self.rollback:
            out["rollback"] = [r.as_dict() for r in self.rollback]
        return out


@dataclass(frozen=True)
class Runbook:
    name: str
    description: str
    params: tuple[Param, ...]
    steps: tuple[RunbookStep, ...]
    file: str = "<runbook>"
    text: str = ""

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def step(self, step_id: str) -> RunbookStep | None:
        return next((s for s in self.steps if s.id == step_id), None)


REFERENCE = re.compile(r"\$\$\{|\$\{\s*params\.([A-Za-z_][A-Za-z0-9_-]*)\s*\}|\$\{([^}]*)\}?")


def references(value: object) -> list[str]:
    """Every `${...}` inside `value` (strings, lists, mappings), as written: names of
    params for `${params.x}`, or the raw text of a malformed reference prefixed '!'."""
    found: list[str] = []
    if isinstance(value, str):
        for m in REFERENCE.finditer(value):
            if m.group(0) == "$${":
                continue
            found.append(m.group(1) if m.group(1) else "!" + m.group(0))
    elif isinstance(value, list | tuple):
        for item in value:
            found += references(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            found += references(item)
    return found


def substitute(value: object, params: Mapping[str, object]) -> object:
    """`value` with `${params.x}` replaced (see the module doc). KeyError for an
    unknown param (validation prevents it)."""
    if isinstance(value, str):
        whole = REFERENCE.fullmatch(value.strip())
        if whole and whole.group(1):
            return params[whole.group(1)]

        def one(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            if not m.group(1):
                raise KeyError(m.group(0))
            got = params[m.group(1)]
            return ",".join(got) if isinstance(got, tuple) else str(got)

        return REFERENCE.sub(one, value)
    if isinstance(value, list | tuple):
        return [substitute(v, params) for v in value]
    if isinstance(value, Mapping):
        return {k: substitute(v, params) for k, v in value.items()}
    return value
