"""The connect-time decision table (pure), with the reasons an operator reads."""

from __future__ import annotations

from dataclasses import replace

import pytest

from drorch.replication.base import DiskState, Role
from drorch.replication.pyrepl.handshake import MIRROR, Action, SideView, decide_sync
from drorch.replication.pyrepl.meta import Generation

UP, INC, OUT = DiskState.UP_TO_DATE, DiskState.INCONSISTENT, DiskState.OUTDATED
P, S = Role.PRIMARY, Role.SECONDARY


def side(
    node: str,
    role: Role = S,
    disk: DiskState = UP,
    cur: str = "c0",
    bm: str = "0",
    hist: tuple[str, ...] = (),
    epoch: int = 0,
    **kw: object,
) -> SideView:
    return SideView("vol", node, 1 << 20, 65536, role, disk, Generation(cur, bm, hist), epoch, **kw)  # type: ignore[arg-type]


CASES = [
    # (local, peer, action, full, words in the reason)
    (side("a", P), side("b"), Action.IN_SYNC, False, "both sides hold generation c0"),
    (side("a", P, cur="c1", bm="c0"), side("b"), Action.SOURCE, False, "local changed since"),
    (side("a", S), side("b", P, cur="c1", bm="c0"), Action.TARGET, False, "peer changed since"),
    (side("a", S, cur="c1", bm="c0"), side("b", S, cur="c2", bm="c0"), Action.SPLIT_BRAIN,
     False, "both sides changed since generation c0"),
    (side("a", P, cur="x"), side("b", cur="y"), Action.SPLIT_BRAIN, False, "unrelated data"),
    (side("a", P, cur="c2", hist=("c0",)), side("b"), Action.SOURCE, True, "older generation"),
    (side("a", P), side("b", S, INC, cur="0"), Action.SOURCE, True, "peer disk is Inconsistent"),
    (side("a", S, INC, cur="0"), side("b", S, INC, cur="0"), Action.NO_DATA, False,
     "neither side has usable data"),
    (side("a", P), side("b", P), Action.REFUSE, False, "both sides are primary"),
    (side("a", P, epoch=3), side("b", P, epoch=4), Action.STALE_EPOCH, False,
     "this side is a stale primary"),
    (side("a", S, epoch=7), side("b", P, epoch=5), Action.STALE_EPOCH, False,
     "stale primary"),
    (side("a", P, epoch=5), side("b", S, epoch=7), Action.STALE_EPOCH, False,
     "this side is a stale primary"),
    (side("a", S, cur="c1", bm="c0", discard_local=True), side("b", S, cur="c2", bm="c0"),
     Action.TARGET, False, "this side discards its changes"),
    (side("a", S, cur="x", discard_local=True), side("b", cur="y"), Action.TARGET, True,
     "discards"),
    (side("a", P, dirty_regions=3), side("b"), Action.SOURCE, False, "left dirty"),
    (side("a", S, OUT), side("b"), Action.TARGET, True, "local disk is Outdated"),
    (side("a", P, cur="c1", bm="c0"), side("b", P), Action.REFUSE, False, "both sides"),
    (side("a", S, cur="c1", bm="c0"), side("b", P), Action.REFUSE, False,
     "the peer is primary but would have to become sync target"),
]  # fmt: skip


@pytest.mark.parametrize(("local", "peer", "action", "full", "reason"), CASES)
def test_decision_and_reason(
    local: SideView, peer: SideView, action: Action, full: bool, reason: str
) -> None:
    decision = decide_sync(local, peer)
    assert decision.action == action
    assert decision.full == full
    assert reason in decision.reason


@pytest.mark.parametrize(("local", "peer", "action", "full", "reason"), CASES)
def test_both_sides_reach_the_same_verdict(
    local: SideView, peer: SideView, action: Action, full: bool, reason: str
) -> None:
    mine, theirs = decide_sync(local, peer), decide_sync(peer, local)
    assert MIRROR.get(mine.action, mine.action) == theirs.action
    assert mine.full == theirs.full


def test_volume_mismatch_is_refused() -> None:
    other = replace(side("b"), size=2 << 20)
    decision = decide_sync(side("a", P), other)
    assert decision.action == Action.REFUSE and "volume mismatch" in decision.reason
    assert not decision.connects


def test_sideview_round_trips_through_hello() -> None:
    view = side("a", P, cur="c1", bm="c0", hist=("h",), epoch=3, dirty_regions=2)
    assert SideView.from_dict(view.as_dict()) == view
