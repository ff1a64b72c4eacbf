"""A run's cancellation as the engine sees it (the token: drorch/cancel.py). Before each
step, and in the sleeps between a step's attempts, a cancelled run fails the step as
`cancelled`; the engine then stops without rolling back (whoever cancelled the run owns
what runs now: the agent's self-fence)."""

from __future__ import annotations

from collections.abc import Callable

from drorch.cancel import Cancel, Cancelled
from drorch.clock import Clock
from drorch.runbook.steps.base import StepFailed

CANCELLED = "cancelled"  # the failure code of a step that a cancelled run did not run


def _failure(reason: str) -> StepFailed:
    return StepFailed(CANCELLED, f"run cancelled: {reason}")


def cancelled_step(cancel: Cancel | None) -> StepFailed | None:
    """The failure of the next step when the run is cancelled, else None."""
    why = cancel.reason if cancel is not None else None
    return None if why is None else _failure(why)


def retry_sleep(clock: Clock, cancel: Cancel | None) -> Callable[[float], None]:
    """The sleep between attempts: cut short by a cancellation, as StepFailed."""
    if cancel is None:
        return clock.sleep

    def sleep(seconds: float) -> None:
        try:
            cancel.sleep(clock, seconds)
        except Cancelled as exc:
            raise _failure(exc.reason) from exc

    return sleep
