"""The contract of the optional `DualPrimary` capability
(`drorch.replication.capabilities`): every driver that claims it passes these, with the
same `pair` fixture as `ReplicatorContract` (connected, in sync, sync mode).

    class TestSimDual(DualPrimaryContract):
        @pytest.fixture
        def pair(self, tmp_path) -> Iterator[ReplicatorPair]: ...

A second primary is promoted beside the first only once two primaries are allowed;
forbidding is refused while both are primary; demoting the first leaves the second the
sole primary, holding at least the epoch it was promoted with.
"""

from __future__ import annotations

import pytest

from drorch.replication.base import ReplicationError, Role
from drorch.replication.capabilities import DualPrimary
from drorch.testing.contract_replicator import ReplicatorPair, wait_for


def _dual(pair: ReplicatorPair) -> tuple[DualPrimary, DualPrimary]:
    p, s = pair.primary, pair.secondary
    assert isinstance(p, DualPrimary) and isinstance(s, DualPrimary)
    return p, s


class DualPrimaryContract:
    """Contract tests; see the module docstring."""

    def test_two_primaries_start_forbidden(self, pair: ReplicatorPair) -> None:
        p, s = _dual(pair)
        assert not p.two_primaries_allowed() and not s.two_primaries_allowed()

    def test_allow_is_seen_by_both_sides_and_idempotent(self, pair: ReplicatorPair) -> None:
        p, s = _dual(pair)
        p.allow_two_primaries()
        p.allow_two_primaries()
        wait_for(
            pair, "both allowed", lambda: p.two_primaries_allowed() and s.two_primaries_allowed()
        )

    def test_second_primary_then_hand_over(self, pair: ReplicatorPair) -> None:
        p, s = _dual(pair)
        p.allow_two_primaries()
        wait_for(pair, "allowed at the secondary", s.two_primaries_allowed)
        pair.secondary.promote(epoch=100)
        assert pair.secondary.status().role == Role.PRIMARY
        assert pair.primary.status().role == Role.PRIMARY
        for side in (p, s):
            with pytest.raises(ReplicationError):
                side.forbid_two_primaries()
        pair.primary.demote()
        wait_for(pair, "the second is sole primary", lambda: pair.secondary.status().epoch >= 100)
        assert pair.secondary.status().role == Role.PRIMARY
        assert pair.primary.status().role == Role.SECONDARY
        s.forbid_two_primaries()
        s.forbid_two_primaries()  # idempotent
        wait_for(pair, "both forbidden", lambda: not p.two_primaries_allowed())
        assert not s.two_primaries_allowed()

    def test_forbidden_again_refuses_a_second_primary(self, pair: ReplicatorPair) -> None:
        p, s = _dual(pair)
        p.allow_two_primaries()
        p.forbid_two_primaries()
        wait_for(pair, "forbidden at the secondary", lambda: not s.two_primaries_allowed())
        with pytest.raises(ReplicationError):
            pair.secondary.promote(epoch=100)
        assert pair.secondary.status().role == Role.SECONDARY
