"""Invariants of the convergence policy and the pre-copy model, over generated inputs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from drorch.virt.base import MigrationOptions, MigrationProgress
from drorch.virt.convergence import ConvergencePolicy
from drorch.virt.precopy import LinkModel, PrecopyAborted, PrecopySimulation

MIB = 1024 * 1024

options_strategy = st.builds(
    MigrationOptions,
    max_downtime=st.floats(0.05, 1.0),
    downtime_ceiling=st.floats(0.05, 4.0),
    downtime_steps=st.integers(1, 6),
    stall_iterations=st.integers(1, 4),
    auto_converge=st.booleans(),
    adaptive=st.booleans(),
    allow_postcopy=st.booleans(),
    deadline=st.floats(5.0, 120.0),
)


@given(
    options_strategy,
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4096), st.floats(0, 3)), max_size=80),
)
def test_virt_policy_invariants(
    options: MigrationOptions, steps: list[tuple[int, int, float]]
) -> None:
    policy = ConvergencePolicy(options)
    iteration, elapsed, previous_max = 1, 0.0, options.max_downtime
    ended = False
    for bump, remaining_mib, dt in steps:
        iteration += bump
        elapsed += dt
        progress = MigrationProgress(
            elapsed, 0, remaining_mib * MIB, 4096 * MIB, 0, iteration,
            remaining_mib, round(policy.max_downtime * 1000),
        )  # fmt: skip
        action = policy.observe(progress)
        assert action.reason
        # the allowed downtime only grows, never past the ceiling, and only when adaptive
        assert previous_max <= policy.max_downtime <= max(options.downtime_ceiling, previous_max)
        if not options.adaptive:
            assert policy.max_downtime == options.max_downtime
        if action.kind == "raise_downtime":
            assert action.max_downtime == policy.max_downtime
        if action.kind in ("postcopy", "abort") and not ended:
            near = elapsed + options.switch_margin + remaining_mib / 1000 >= options.deadline
            assert near, "the deadline is the only way out"
            assert (action.kind == "postcopy") == options.allow_postcopy
            ended = True
        if action.kind == "auto_converge":
            assert options.auto_converge
        previous_max = policy.max_downtime


@settings(max_examples=60, deadline=None)
@given(
    memory_mib=st.integers(16, 8192),
    dirty_mibps=st.floats(0, 5000),
    working_fraction=st.floats(0.05, 1.0),
    bandwidth_mibps=st.floats(50, 5000),
    options=options_strategy,
)
def test_virt_precopy_invariants(
    memory_mib: int,
    dirty_mibps: float,
    working_fraction: float,
    bandwidth_mibps: float,
    options: MigrationOptions,
) -> None:
    link = LinkModel(
        memory_mib * MIB, dirty_mibps * MIB, int(memory_mib * working_fraction) * MIB,
        bandwidth_mibps * MIB,
    )  # fmt: skip
    simulation = PrecopySimulation(link, options)
    samples = []
    try:
        samples = [s.progress for s in simulation.run()]
    except PrecopyAborted as aborted:
        result = aborted.result
        assert "migration did not converge" in result.reason
        assert not options.allow_postcopy
        assert result.downtime_ms is None
        assert result.total_seconds <= options.deadline
    else:
        assert simulation.result is not None
        result = simulation.result
        assert result.converged != result.postcopy
        assert result.downtime_ms is not None
        if result.converged:
            allowed = result.final_max_downtime_ms + 10  # plus the 10 ms hand-over
            assert result.downtime_ms <= allowed + 1
        assert result.data_transferred >= link.memory - 1
        assert samples and samples[-1].data_remaining == 0
    elapsed = [s.elapsed for s in samples]
    assert elapsed == sorted(elapsed)
    processed = [s.data_processed for s in samples]
    assert processed == sorted(processed)
