"""decide_rejoin: a returning site rejoins as secondary and resyncs, on the witness's
evidence only; the holder's side dials again; nothing ever promotes. Reasons asserted."""

from __future__ import annotations

import pytest

from drorch.decide.rejoin import LeaseView, RejoinAction, ReplicaView, decide_rejoin

B_HOLDS = LeaseView(reachable=True, holder="B", epoch=7)
A_HOLDS = LeaseView(reachable=True, holder="A", epoch=7)
DOWN = LeaseView(reachable=False, holder=None, epoch=0)


def rv(**kw: object) -> ReplicaView:
    base: dict[str, object] = {"volume": "data", "running": True, "role": "secondary"}
    base.update(kw)
    return ReplicaView(**base)  # type: ignore[arg-type]


CASES = [
    # (what, replica, lease, peer_seen, action, reason starts with)
    ("no daemon here", rv(running=False), B_HOLDS, True, RejoinAction.START,
     "no replicator answers for data here: start it as secondary (it never starts primary)"),
    ("no daemon, witness down: still only secondary", rv(running=False), DOWN, False,
     RejoinAction.START, "no replicator answers"),
    ("stale primary", rv(role="primary", epoch=3), B_HOLDS, True, RejoinAction.DEMOTE,
     "site B holds the lease at epoch 7, newer than this primary's epoch 3: this copy is"
     " stale; demote it and rejoin as secondary"),
    ("stale primary, peer not seen yet: demote anyway", rv(role="primary", epoch=3),
     B_HOLDS, False, RejoinAction.DEMOTE, "site B holds the lease at epoch 7"),
    ("primary at the holder's epoch (hand-over)", rv(role="primary", epoch=7), B_HOLDS, True,
     RejoinAction.NONE, "primary at epoch 7"),
    ("primary, witness unreachable: quorum decides, not rejoin", rv(role="primary", epoch=3),
     DOWN, True, RejoinAction.NONE, "primary at epoch 3"),
    ("holder's primary whose peer was refused", rv(role="primary", epoch=7, split_brain=True),
     A_HOLDS, True, RejoinAction.CONNECT,
     "site A holds the lease and its copy is current; the peer's copy was refused (split"
     " brain): dial again"),
    ("holder's primary, peer unseen: no dialing", rv(role="primary", epoch=7,
     refused="stale-epoch: ..."), A_HOLDS, False, RejoinAction.NONE, "primary at epoch 7"),
    ("split brain, superseded here", rv(split_brain=True, epoch=3, out_of_sync_bytes=65536),
     B_HOLDS, True, RejoinAction.DISCARD_LOCAL,
     "split brain, and the witness granted site B epoch 7 after this copy's epoch 3: the"
     " changes here since the split belong to a fenced or failed-over site; discard them"
     " and resync from B (65536 bytes out of sync here)"),
    ("split brain, peer unseen: wait", rv(split_brain=True, epoch=3), B_HOLDS, False,
     RejoinAction.BLOCKED, "split brain, and nothing says"),
    ("split brain, witness down", rv(split_brain=True, epoch=3), DOWN, True,
     RejoinAction.BLOCKED, "split brain, and nothing says this copy is the older one (the"
     " witness is unreachable; epoch here 3): resolve it by hand"),
    ("split brain, this site holds", rv(split_brain=True, epoch=3), A_HOLDS, True,
     RejoinAction.BLOCKED, "split brain, and nothing says this copy is the older one (site A;"),
    ("split brain, same epoch: not evidence", rv(split_brain=True, epoch=7), B_HOLDS, True,
     RejoinAction.BLOCKED, "split brain, and nothing says"),
    ("secondary refused, peer holds", rv(connection="StandAlone", refused="stale-epoch: x"),
     B_HOLDS, True, RejoinAction.CONNECT,
     "secondary, StandAlone after a refused connect (stale-epoch: x); site B holds the"
     " lease: dial again to resync from it"),
    ("secondary refused, nobody holds: wait", rv(connection="StandAlone", refused="x"),
     LeaseView(True, None, 7), True, RejoinAction.NONE, "secondary, StandAlone"),
    ("resyncing", rv(connection="SyncTarget", percent_in_sync=42.5, resync_eta=3.2), B_HOLDS,
     True, RejoinAction.NONE, "secondary, resyncing from B: 42.5% in sync, about 3s left"),
    ("in sync", rv(connection="Connected", disk="UpToDate", epoch=7), B_HOLDS, True,
     RejoinAction.NONE, "secondary, Connected, disk UpToDate"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("replica", "lease", "peer_seen", "action", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide_rejoin(
    replica: ReplicaView,
    lease: LeaseView,
    peer_seen: bool,
    action: RejoinAction,
    reason: str,
) -> None:
    step = decide_rejoin(replica, site="A", peer="B", lease=lease, peer_seen=peer_seen)
    assert (step.action, step.volume) == (action, "data")
    assert step.reason.startswith(reason), step.reason


@pytest.mark.parametrize(
    ("maintenance", "takeover", "reason"),
    [
        (True, False, "maintenance mode: the agent acts on nothing"),
        (False, True, "the site-failover runbook owns the volumes now"),
    ],
)
def test_maintenance_and_a_running_takeover_touch_nothing(
    maintenance: bool, takeover: bool, reason: str
) -> None:
    step = decide_rejoin(
        rv(running=False),
        site="A",
        peer="B",
        lease=B_HOLDS,
        peer_seen=True,
        maintenance=maintenance,
        takeover_running=takeover,
    )
    assert (step.action, step.reason) == (RejoinAction.NONE, reason)


def test_nothing_ever_promotes() -> None:
    actions = {c[4] for c in CASES}
    assert "promote" not in {a.value for a in RejoinAction}
    assert actions <= set(RejoinAction)
