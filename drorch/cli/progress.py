"""Progress display for long operations (migrations, resyncs, runbooks).

On a terminal it redraws one bar line; otherwise it prints a line at most every
`min_interval` seconds so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(
        self,
        label: str,
        total: int,
        *,
        stream: TextIO | None = None,
        width: int = 30,
        min_interval: float = 1.0,
    ) -> None:
        self.label = label
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.width = width
        self.min_interval = min_interval
        self._last = 0.0
        self._tty = self.stream.isatty()

    def update(self, done: int, detail: str = "", *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and not self._tty and now - self._last < self.min_interval:
            return
        self._last = now
        frac = min(max(done / self.total, 0.0), 1.0)
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"{self.label} [{bar}] {frac * 100:5.1f}% {detail}".rstrip()
        if self._tty:
            self.stream.write("\r" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self, detail: str = "done") -> None:
        self.update(self.total, detail, force=True)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
