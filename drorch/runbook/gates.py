"""Confirmation gates: who says yes to a `confirm:` step.

The engine asks a `Confirmer`; the CLI gives it one that asks on the terminal, or
`YesConfirmer` for `--yes`. The answer names who gave it, for the journal and report.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Answer:
    approved: bool
    who: str


class Confirmer(Protocol):
    def ask(self, prompt: str, step: str) -> Answer:
        """Ask a person whether `step` may run; block until they answer."""


def operator_name() -> str:
    """The person behind this process: the sudo caller if any, else the login user."""
    for var in ("SUDO_USER", "LOGNAME", "USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid {os.getuid()}"


class YesConfirmer:
    """`--yes`: every gate is answered yes, recorded as the operator with (--yes)."""

    def __init__(self, user: str | None = None) -> None:
        self.user = user or operator_name()

    def ask(self, prompt: str, step: str) -> Answer:
        return Answer(True, f"{self.user} (--yes)")


class ScriptedConfirmer:
    """Answers from a list (tests, and the demo): True/False in order."""

    def __init__(self, answers: Iterable[bool], who: str = "script") -> None:
        self.answers = list(answers)
        self.who = who
        self.asked: list[tuple[str, str]] = []

    def ask(self, prompt: str, step: str) -> Answer:
        self.asked.append((prompt, step))
        if not self.answers:
            return Answer(False, f"{self.who} (no answer left)")
        return Answer(self.answers.pop(0), self.who)
