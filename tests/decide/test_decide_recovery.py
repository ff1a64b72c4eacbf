"""Restart in place up to max_restarts within failure_window, then escalate."""

from __future__ import annotations

import pytest

from drorch.decide.recovery import Recovery, RecoveryPolicy, decide_recovery

P = RecoveryPolicy(max_restarts=2, failure_window=600, restart_budget=60)


@pytest.mark.parametrize(
    ("failed", "failures", "restart", "now", "action", "reason"),
    [
        (False, (), None, 1000, Recovery.NONE, "web passes its monitors"),
        (True, (), None, 1000, Recovery.RESTART, "web failed; restart 1 of 2 in place within 600s"),
        (
            True,
            (900.0,),
            None,
            1000,
            Recovery.RESTART,
            "web failed; restart 2 of 2 in place within 600s",
        ),
        (
            True,
            (500.0, 900.0),
            None,
            1000,
            Recovery.ESCALATE,
            "web failed 3 times within 600s (max_restarts 2): escalate to moving its group",
        ),
        (
            True,
            (100.0, 900.0),
            None,
            1000,
            Recovery.RESTART,
            "web failed; restart 2 of 2 in place within 600s",
        ),
        (
            True,
            (900.0,),
            980.0,
            1000,
            Recovery.WAIT,
            "web is being restarted (40s of its 60s budget left)",
        ),
        (
            True,
            (900.0, 950.0),
            900.0,
            1000,
            Recovery.ESCALATE,
            "web failed 3 times within 600s (max_restarts 2): escalate to moving its group",
        ),
    ],
)
def test_recovery_table(
    failed: bool,
    failures: tuple[float, ...],
    restart: float | None,
    now: float,
    action: Recovery,
    reason: str,
) -> None:
    d = decide_recovery(
        "web", failed_now=failed, failures=failures, restart_started=restart, now=now, policy=P
    )
    assert (d.action, d.reason) == (action, reason)


def test_three_failures_escalate_in_sequence() -> None:
    """A monitor fails three times: two restarts, then the group is escalated."""
    failures: tuple[float, ...] = ()
    actions = []
    for t in (0.0, 100.0, 200.0):
        d = decide_recovery(
            "db", failed_now=True, failures=failures, restart_started=None, now=t, policy=P
        )
        actions.append(d.action)
        failures += (t,)
    assert actions == [Recovery.RESTART, Recovery.RESTART, Recovery.ESCALATE]
