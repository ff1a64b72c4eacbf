"""The quorum rule as a table: majority, minority, and the witness only at exactly half."""

from __future__ import annotations

import pytest

from drorch.decide.quorum import QuorumBasis, WitnessView, decide_quorum

GRANTED = WitnessView(reachable=True, granted=True, holder="A", epoch=7, lease_left=2.5)
REFUSED = WitnessView(reachable=True, granted=False, holder="B", epoch=7)
NOBODY = WitnessView(reachable=True, granted=False)
DOWN = WitnessView(reachable=False)
HELD_UNREACHABLE = WitnessView(reachable=False, granted=True, holder="A", epoch=7, lease_left=1.5)


@pytest.mark.parametrize(
    ("total", "members", "witness", "quorum", "basis", "reason"),
    [
        (3, ("a1", "a2"), None, True, "majority", "majority: 2 of 3 nodes are members"),
        (3, ("a1", "a2"), REFUSED, True, "majority", "majority: 2 of 3 nodes are members"),
        (
            3,
            ("a1",),
            GRANTED,
            False,
            "none",
            "minority: only 1 of 3 nodes are members; a minority never has quorum",
        ),
        (
            2,
            ("a1",),
            GRANTED,
            True,
            "witness",
            "exactly half (1 of 2 nodes); the witness granted site A the lease"
            " (epoch 7, 2.5s left)",
        ),
        (
            2,
            ("a1",),
            REFUSED,
            False,
            "none",
            "exactly half (1 of 2 nodes) and the witness refused site A the lease: site B holds it",
        ),
        (
            2,
            ("a1",),
            NOBODY,
            False,
            "none",
            "exactly half (1 of 2 nodes) and the witness refused site A the lease:"
            " it granted nobody",
        ),
        (
            4,
            ("a1", "a2"),
            DOWN,
            False,
            "none",
            "exactly half (2 of 4 nodes) and the witness is unreachable: no tiebreaker",
        ),
        (
            2,
            ("a1",),
            None,
            False,
            "none",
            "exactly half (1 of 2 nodes) and no witness is configured to break the tie",
        ),
        (2, ("a1", "b1"), DOWN, True, "majority", "majority: 2 of 2 nodes are members"),
        (
            2,
            ("a1",),
            HELD_UNREACHABLE,
            True,
            "witness",
            "exactly half (1 of 2 nodes); the witness granted site A the lease"
            " (epoch 7, 1.5s left) (the witness is unreachable now)",
        ),
    ],
)
def test_quorum_table(
    total: int,
    members: tuple[str, ...],
    witness: WitnessView | None,
    quorum: bool,
    basis: str,
    reason: str,
) -> None:
    d = decide_quorum(total, members, "A", witness)
    assert (d.has_quorum, d.basis, d.reason) == (quorum, QuorumBasis(basis), reason)


def test_epoch_comes_from_the_grant() -> None:
    assert decide_quorum(2, ("a1",), "A", GRANTED).epoch == 7


@pytest.mark.parametrize(("total", "members"), [(0, ()), (2, ("a", "b", "c"))])
def test_impossible_inputs_refused(total: int, members: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        decide_quorum(total, members, "A", None)
