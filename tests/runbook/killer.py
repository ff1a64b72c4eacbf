"""Run the drorch CLI with the ledger steps registered and a kill -9 planted.

    python -m tests.runbook.killer --after-events N  -- runbook run ...
    python -m tests.runbook.killer --in-step TOKEN:before|after -- runbook run ...

`--after-events N`: SIGKILL itself right after the N-th journal event is committed
(every step boundary and every point between a step's events). `--in-step`: SIGKILL
inside ledger.add for TOKEN, just before or just after its effect is written (the
step is mid-way: its start is journaled, its end is not).

    python -m tests.runbook.killer --after-run STEP_TYPE -- runbook run ...

`--after-run`: SIGKILL right after the first run() of the real step type STEP_TYPE
returns: its effect took place, its end is not journaled (resume must probe it).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import drorch.testing.ledger_steps as ledger
from drorch.runbook.journal import Journal


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--")
    opts, rest = argv[:split], argv[split + 1 :]
    if opts and opts[0] == "--plan-standins":
        from tests.runbook.plan_standins import install

        install()
        opts = opts[1:]
    if opts and opts[0] == "--after-events":
        limit = int(opts[1])
        original = Journal.append
        count = {"n": 0}

        def append(self: Journal, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            count["n"] += 1
            if count["n"] >= limit:
                _die()

        Journal.append = append  # type: ignore[method-assign]
    elif opts and opts[0] == "--after-run":
        from drorch.runbook.steps.base import load_step_types

        step = load_step_types()[opts[1]]
        real_run = step.run

        def run_then_die(ctx: Any, args: Any) -> Any:
            real_run(ctx, args)
            _die()

        step.run = run_then_die  # type: ignore[method-assign]
    elif opts and opts[0] == "--in-step":
        token, _, when = opts[1].partition(":")
        original_append = ledger._append

        def write(path: str, line: str) -> None:
            if line == f"add {token}" and when == "before":
                _die()
            original_append(path, line)
            if line == f"add {token}" and when == "after":
                _die()

        ledger._append = write
    from drorch.cli.main import cli

    cli(args=rest, prog_name="drorch")


if __name__ == "__main__":
    main()
