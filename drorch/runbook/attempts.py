"""Run one step with its timeout and retry policy (tenacity, on the injected clock).

Each attempt gets a deadline: `timeout` after it starts, never past the total retry
deadline. A failed attempt is retried only when its `StepFailed.code` is in
`retry.codes`, at most `attempts` times, and only while the next backoff still ends
before the total deadline. Anything but StepFailed from a step (a bug, an OSError) is
turned into StepFailed("step-error") so it is journaled and reported, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable

import tenacity

from drorch.clock import Clock
from drorch.runbook.model import Retry
from drorch.runbook.steps.base import StepFailed, StepResult


def _as_failure(exc: Exception) -> StepFailed:
    if isinstance(exc, StepFailed):
        return exc
    return StepFailed("step-error", f"{type(exc).__name__}: {exc}")


def run_attempts(
    clock: Clock,
    retry: Retry,
    timeout: float | None,
    attempt: Callable[[int, float | None], StepResult],
    on_retry: Callable[[int, StepFailed, float], None],
    sleep: Callable[[float], None] | None = None,
) -> StepResult:
    """`attempt(number, deadline)` until it succeeds or the policy gives up (then the
    last StepFailed is raised). `on_retry(number, failure, sleep)` before each backoff;
    `sleep` (default `clock.sleep`) waits it out, and what it raises ends the step."""
    start = clock.monotonic()
    total = None if retry.deadline is None else start + retry.deadline
    if total is None and timeout is not None and retry.attempts <= 1:
        total = start + timeout
    counter = {"n": 0}

    def one() -> StepResult:
        counter["n"] += 1
        now = clock.monotonic()
        deadline = None if timeout is None else now + timeout
        if total is not None:
            deadline = total if deadline is None else min(deadline, total)
        try:
            return attempt(counter["n"], deadline)
        except Exception as exc:  # every failure is journaled as a StepFailed
            raise _as_failure(exc) from exc

    if retry.attempts <= 1:
        return one()

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= retry.attempts:
            return True
        upcoming = state.upcoming_sleep or 0.0
        return total is not None and clock.monotonic() + upcoming >= total

    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, StepFailed) and exc.code in retry.codes

    def wait(state: tenacity.RetryCallState) -> float:
        n = state.attempt_number - 1
        return float(min(retry.backoff * retry.multiplier**n, retry.max_backoff))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, StepFailed):
            on_retry(state.attempt_number, exc, state.upcoming_sleep or 0.0)

    retrying = tenacity.Retrying(
        stop=stop,
        wait=wait,
        retry=tenacity.retry_if_exception(retryable),
        sleep=sleep or clock.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(one)
