"""A mismatched peer (size, name, region size, sync against async) is refused on both
sides, and both sides say why in their status."""

from __future__ import annotations

import pytest

from drorch.replication.base import Role
from tests.pyrepl.conftest import Cluster, wait_until


@pytest.mark.parametrize(
    ("b_args", "a_args", "secondary_says"),
    [
        ({"size": 1 << 20}, {"size": 2 << 20}, "refused a connection for volume vol/2097152B"),
        (
            {"mode": "async"},
            {"mode": "sync"},
            "refused a peer in sync mode: this side replicates async",
        ),
    ],
)
def test_both_sides_refuse_and_say_why(
    cluster: Cluster, b_args: dict[str, object], a_args: dict[str, object], secondary_says: str
) -> None:
    b = cluster.start("b", Role.SECONDARY, **b_args)  # type: ignore[arg-type]
    a = cluster.start("a", Role.PRIMARY, peer=b.listen, **a_args)  # type: ignore[arg-type]

    def both_say() -> bool:
        ea, eb = a.status()["extra"].get("last_error"), b.status()["extra"].get("last_error")
        return bool(ea and eb)

    wait_until("both sides report the refusal", both_say)
    sa, sb = a.status(), b.status()
    assert sa["connection"] != "Connected" and sb["connection"] != "Connected"
    assert secondary_says in sb["extra"]["last_error"]
    assert sa["extra"]["last_error"].startswith("the peer refused this side: ")
    assert secondary_says in sa["extra"]["last_error"]
