"""The runbook engine's output on a terminal: step lines on stdout and one live
progress line for the running step (redrawn on a TTY, at most every 2 s otherwise)."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

import click

from drorch.runbook.gates import Answer, operator_name
from drorch.runbook.setup import Output


class _Line:
    def __init__(self, owner: CliOutput, label: str) -> None:
        self.owner = owner
        self.label = label
        self.last = 0.0

    def update(self, done: float, total: float, detail: str = "") -> None:
        now = time.monotonic()
        tty = self.owner.tty
        if not tty and now - self.last < 2.0 and done < total:
            return
        self.last = now
        frac = 0.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
        filled = int(frac * 24)
        text = f"{self.label} [{'#' * filled}{'-' * (24 - filled)}] {frac * 100:3.0f}% {detail}"
        self.owner.draw(text.rstrip())

    def note(self, text: str) -> None:
        self.owner.line(f"  {text}")


class CliOutput(Output):
    def __init__(self, stream: TextIO | None = None, progress: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.bar = progress or sys.stderr
        self.tty = self.bar.isatty()
        self.drawn = False

    def line(self, text: str) -> None:
        self.done()
        click.echo(text, file=self.stream)

    def progress(self, label: str) -> _Line:
        return _Line(self, label)

    def draw(self, text: str) -> None:
        if self.tty:
            self.bar.write("\r\x1b[2K" + text)
            self.drawn = True
        else:
            self.bar.write(text + "\n")
        self.bar.flush()

    def done(self) -> None:
        if self.drawn:
            self.bar.write("\r\x1b[2K")
            self.bar.flush()
            self.drawn = False


class TtyConfirmer:
    """Asks on the terminal; the answer is recorded as the operator and the tty."""

    def __init__(self) -> None:
        try:
            tty = os.ttyname(sys.stdin.fileno())
        except OSError:
            tty = "tty"
        self.who = f"{operator_name()} ({tty})"

    def ask(self, prompt: str, step: str) -> Answer:
        try:
            approved = click.confirm(f"[{step}] {prompt}", default=False)
        except click.Abort:  # Ctrl-C or end of input at the prompt: that is a no
            click.echo("", err=True)
            approved = False
        return Answer(approved, self.who)
