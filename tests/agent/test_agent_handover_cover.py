"""Which replication states let a site run primary under its peer's lease (a planned
hand-over), from real ReplicationStatus values."""

from __future__ import annotations

import pytest

from drorch.agent.resources import peer_cannot_write
from drorch.replication.base import ConnState, DiskState, ReplicationStatus, Role

P, S, U = Role.PRIMARY, Role.SECONDARY, Role.UNKNOWN
C, A = ConnState.CONNECTED, ConnState.CONNECTING


def _st(role: Role, conn: ConnState, peer: Role, dual: str = "off") -> ReplicationStatus:
    return ReplicationStatus(
        "v", role, DiskState.UP_TO_DATE, conn, "sync", peer_role=peer,
        extra={"two_primaries": {"state": dual}},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "covered"),
    [
        (_st(P, C, P, "second-primary"), "second-primary of a connected live hand-over"),
        (_st(P, C, P, "first-primary"), "first-primary of a connected live hand-over"),
        (_st(P, C, S), "primary beside a connected secondary"),
        (_st(S, C, P), "secondary beside a connected primary"),
        (_st(P, C, P), None),  # two primaries outside a hand-over: never covered
        (_st(P, A, S), None),  # the link is down: quorum alone decides
        (_st(P, A, P, "orphaned"), None),
        (_st(P, C, U), None),
    ],
)
def test_peer_cannot_write(status: ReplicationStatus, covered: str | None) -> None:
    why = peer_cannot_write(status)
    if covered is None:
        assert why is None
    else:
        assert why is not None and why.startswith(covered)
