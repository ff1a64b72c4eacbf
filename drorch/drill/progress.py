"""Keep the progress the steps report (a live migration's bytes sent, a resync's bytes
to go) as samples, for the report's progress curves. It wraps the run's Output: the
operator still sees the live line."""

from __future__ import annotations

import re
from collections.abc import Callable

from drorch.clock import Clock
from drorch.runbook.setup import Output
from drorch.runbook.steps.base import Progress

RUN_LINE = re.compile(r"^run (\S+): ")  # the engine's first line: "run ID: RUNBOOK on CLUSTER"
MAX_SAMPLES = 500  # per step: a long migration updates often; keep the curve's shape


class ProgressRecorder(Output):
    """`on_run_id` is called once with the run id, as soon as the engine announces it
    (its first line), so the history row names the run even if the process dies."""

    def __init__(
        self, inner: Output, clock: Clock, on_run_id: Callable[[str], None] = lambda r: None
    ) -> None:
        self.inner = inner
        self.clock = clock
        self.on_run_id = on_run_id
        self.run_id = ""
        # by step key: [seconds since its first sample, fraction done]
        self.samples: dict[str, list[list[float]]] = {}
        self._t0: dict[str, float] = {}

    def line(self, text: str) -> None:
        if not self.run_id:
            found = RUN_LINE.match(text)
            if found:
                self.run_id = found.group(1)
                self.on_run_id(self.run_id)
        self.inner.line(text)

    def done(self) -> None:
        self.inner.done()

    def progress(self, label: str) -> Progress:
        key = label.split("] ", 1)[-1].strip()
        live = self.inner.progress(label)
        outer = self

        class _Sampling:
            def update(self, done: float, total: float, detail: str = "") -> None:
                live.update(done, total, detail)
                if total > 0:
                    outer._add(key, done / total)

            def note(self, text: str) -> None:
                live.note(text)

        return _Sampling()

    def _add(self, key: str, fraction: float) -> None:
        now = self.clock.monotonic()
        t0 = self._t0.setdefault(key, now)
        got = self.samples.setdefault(key, [])
        if len(got) < MAX_SAMPLES:
            got.append([round(now - t0, 3), round(min(max(fraction, 0.0), 1.0), 4)])
        else:  # keep the last sample current
            got[-1] = [round(now - t0, 3), round(min(max(fraction, 0.0), 1.0), 4)]
