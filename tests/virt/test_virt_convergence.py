"""The pure convergence policy: tables of progress samples -> actions and reasons."""

from __future__ import annotations

import pytest

from drorch.virt.base import MigrationOptions, MigrationProgress
from drorch.virt.convergence import ConvergencePolicy

MIB = 1024 * 1024


def sample(
    iteration: int, remaining_mib: float, elapsed: float = 10.0, expected_ms: int = 900
) -> MigrationProgress:
    return MigrationProgress(
        elapsed=elapsed,
        data_processed=0,
        data_remaining=int(remaining_mib * MIB),
        data_total=4096 * MIB,
        dirty_rate=0,
        iteration=iteration,
        expected_downtime_ms=expected_ms,
        max_downtime_ms=300,
    )


def stalled(first: int, count: int, mib: float = 1000.0) -> list[MigrationProgress]:
    return [sample(i, mib) for i in range(first, first + count)]


CASES = [
    pytest.param(
        MigrationOptions(),
        [sample(1, 1000), sample(2, 800), sample(3, 500)],
        ["continue"] * 3,
        "iteration 3: 500.0 MiB remaining, expected downtime 900 ms, max 300 ms",
        0.3,
        id="falling-data-continues",
    ),
    pytest.param(
        MigrationOptions(),
        stalled(1, 4),
        ["continue", "continue", "continue", "raise_downtime"],
        "data remaining has not fallen for 3 iterations (1000.0 MiB at iteration 4): "
        "raising max downtime 300 ms → 725 ms (step 1/4)",
        0.725,
        id="stall-raises-one-step",
    ),
    pytest.param(
        MigrationOptions(),
        [sample(1, 1000), sample(1, 1000), sample(1, 1000), sample(1, 1000), sample(2, 1000)],
        ["continue"] * 5,
        "iteration 2: 1000.0 MiB remaining",
        0.3,
        id="several-polls-in-one-iteration-are-not-a-stall",
    ),
    pytest.param(
        MigrationOptions(),
        [sample(1, 1000), sample(2, 990), sample(3, 985), sample(4, 981)],
        ["continue", "continue", "continue", "raise_downtime"],
        "raising max downtime 300 ms → 725 ms",
        0.725,
        id="creeping-below-2-percent-is-a-stall",
    ),
    pytest.param(
        MigrationOptions(),
        stalled(1, 16),
        ["continue"] * 3
        + ["raise_downtime", "continue", "continue"] * 3
        + ["raise_downtime", "continue", "continue", "auto_converge"],
        "data remaining has not fallen for 3 iterations (1000.0 MiB at iteration 16) at the "
        "2000 ms ceiling: turning on auto-converge (throttles the guest's vCPUs)",
        2.0,
        id="ceiling-then-auto-converge",
    ),
    pytest.param(
        MigrationOptions(auto_converge=False),
        stalled(1, 19),
        ["continue"] * 3 + ["raise_downtime", "continue", "continue"] * 4 + ["continue"] * 4,
        "data remaining has not fallen for 3 iterations (1000.0 MiB at iteration 19); "
        "nothing left to try before the 600s deadline",
        2.0,
        id="nothing-left-without-auto-converge",
    ),
    pytest.param(
        MigrationOptions(adaptive=False),
        stalled(1, 4),
        ["continue"] * 3 + ["auto_converge"],
        "at 300 ms (adaptive downtime off): turning on auto-converge",
        0.3,
        id="not-adaptive-skips-raising",
    ),
    pytest.param(
        MigrationOptions(adaptive=False, auto_converge=False),
        stalled(1, 7),
        ["continue"] * 7,
        "nothing left to try before the 600s deadline",
        0.3,
        id="not-adaptive-no-auto-converge",
    ),
    pytest.param(
        MigrationOptions(deadline=60.0),
        [sample(1, 1000, elapsed=58.5, expected_ms=400)],
        ["continue"],
        "iteration 1",
        0.3,
        id="deadline-margin-not-yet-reached",
    ),
    pytest.param(
        MigrationOptions(deadline=60.0),
        [sample(1, 1000, elapsed=40), sample(7, 1000, elapsed=58.5, expected_ms=600)],
        ["continue", "abort"],
        "migration did not converge before the 60s deadline (1000.0 MiB still remaining "
        "after 7 iterations, expected downtime 600 ms > max 300 ms); post-copy not allowed, "
        "aborting: the VM keeps running at the source",
        0.3,
        id="deadline-aborts",
    ),
    pytest.param(
        MigrationOptions(deadline=60.0, allow_postcopy=True),
        [sample(7, 1000, elapsed=59.5, expected_ms=100), sample(7, 400, elapsed=60.5)],
        ["postcopy", "continue"],
        "post-copy: 400.0 MiB left to pull",
        0.3,
        id="deadline-switches-to-postcopy",
    ),
    pytest.param(
        MigrationOptions(deadline=60.0),
        [sample(3, 1000, elapsed=70), sample(4, 10, elapsed=71, expected_ms=1)],
        ["abort", "abort"],
        "migration already aborted",
        0.3,
        id="abort-is-final",
    ),
    pytest.param(
        MigrationOptions(max_downtime=0.5, downtime_ceiling=0.5, downtime_steps=1),
        stalled(1, 4),
        ["continue"] * 3 + ["raise_downtime"],
        "raising max downtime 500 ms → 500 ms (step 1/1)",
        0.5,
        id="ceiling-equal-to-start",
    ),
]


@pytest.mark.parametrize(("options", "samples", "kinds", "last_reason", "max_downtime"), CASES)
def test_virt_convergence_table(
    options: MigrationOptions,
    samples: list[MigrationProgress],
    kinds: list[str],
    last_reason: str,
    max_downtime: float,
) -> None:
    policy = ConvergencePolicy(options)
    actions = [policy.observe(s) for s in samples]
    assert [a.kind for a in actions] == kinds
    assert last_reason in actions[-1].reason
    assert policy.max_downtime == pytest.approx(max_downtime)


def test_virt_convergence_raise_steps_reach_ceiling_exactly() -> None:
    policy = ConvergencePolicy(MigrationOptions(max_downtime=0.3, downtime_ceiling=1.0))
    raised = [a.max_downtime for a in map(policy.observe, stalled(1, 13)) if a.max_downtime]
    assert raised == pytest.approx([0.475, 0.65, 0.825, 1.0])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (MigrationOptions(max_downtime=0), "max_downtime must be positive"),
        (MigrationOptions(downtime_steps=0), "downtime_steps must be at least 1"),
        (MigrationOptions(stall_iterations=0), "stall_iterations must be at least 1"),
    ],
)
def test_virt_convergence_rejects_bad_options(options: MigrationOptions, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConvergencePolicy(options)
