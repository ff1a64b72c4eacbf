"""The agent's decisions as tables: when to feed, when to self-fence, when to take over."""

from __future__ import annotations

from dataclasses import replace

import pytest

from drorch.decide.agent import (
    AgentView,
    FailoverMode,
    TakeoverAction,
    decide_feed,
    decide_self_fence,
    decide_takeover,
)
from drorch.decide.quorum import QuorumBasis, QuorumDecision
from drorch.model.types import SelfFence

HAVE = QuorumDecision(True, QuorumBasis.WITNESS, "exactly half; the witness granted site B", 8)
LOST = QuorumDecision(False, QuorumBasis.NONE, "exactly half and the witness is unreachable")
BASE = AgentView(site="B", peer="A", now=100.0, quorum=HAVE, lease_renewed=True)


@pytest.mark.parametrize(
    ("changes", "feed", "reason"),
    [
        ({}, True, "healthy: no primary resources here, all level-1 monitors pass"),
        ({"runs_primary": True}, True, "healthy: primary with quorum, all level-1 monitors pass"),
        ({"loop_progressed": False}, False, "the agent loop made no progress this cycle"),
        (
            {"runs_primary": True, "quorum": LOST},
            False,
            "runs primary resources without quorum: exactly half and the witness is unreachable",
        ),
        ({"quorum": LOST}, True, "healthy: no primary resources here, all level-1 monitors pass"),
        (
            {"runs_primary": True, "lease_renewed": False},
            False,
            "runs primary resources and quorum was not renewed this cycle",
        ),
        (
            {
                "monitors_ok": False,
                "monitors_reason": "db: process 7 is gone, restart budget spent",
            },
            False,
            "monitors: db: process 7 is gone, restart budget spent",
        ),
        (
            {"audit_problems": ("web runs at B but site A holds quorum",)},
            False,
            "self-audit: web runs at B but site A holds quorum",
        ),
        (
            {"maintenance": True, "loop_progressed": False},
            False,
            "maintenance mode: the agent acts on nothing; watchdog disarmed",
        ),
    ],
)
def test_feed_table(changes: dict[str, object], feed: bool, reason: str) -> None:
    d = decide_feed(replace(BASE, **changes))  # type: ignore[arg-type]
    assert (d.feed, d.reason) == (feed, reason)
    assert d.disarm == bool(changes.get("maintenance"))


@pytest.mark.parametrize(
    ("changes", "mode", "fence", "reason"),
    [
        (
            {"runs_primary": False, "quorum": LOST},
            SelfFence.SUICIDE,
            False,
            "nothing to fence: no primary resources here",
        ),
        ({"runs_primary": True}, SelfFence.SUICIDE, False, f"quorum held: {HAVE.reason}"),
        (
            {"runs_primary": True, "quorum": LOST},
            SelfFence.SUICIDE,
            True,
            f"lost quorum ({LOST.reason}): stop writing at once (freeze/demote the volumes,"
            " destroy the guests)",
        ),
        (
            {"runs_primary": True, "quorum": LOST},
            SelfFence.SHUTDOWN,
            True,
            f"lost quorum ({LOST.reason}): stop the resources gracefully within watchdog_timeout",
        ),
    ],
)
def test_self_fence_table(
    changes: dict[str, object], mode: SelfFence, fence: bool, reason: str
) -> None:
    d = decide_self_fence(replace(BASE, **changes), mode)  # type: ignore[arg-type]
    assert (d.fence, d.reason) == (fence, reason)


AUTO, MANUAL = FailoverMode.AUTOMATIC, FailoverMode.MANUAL


@pytest.mark.parametrize(
    ("changes", "mode", "action", "reason"),
    [
        ({}, AUTO, TakeoverAction.NONE, "site A is a member: nothing to take over"),
        (
            {"peer_lost_since": 90.0, "quorum": LOST},
            AUTO,
            TakeoverAction.NONE,
            f"site A lost 10.0s ago, but site B has no quorum: {LOST.reason}",
        ),
        (
            {"peer_lost_since": 95.0},
            AUTO,
            TakeoverAction.WAIT,
            "site A lost 5.0s ago; its lease is still held at the witness",
        ),
        (
            {"peer_lost_since": 95.0, "peer_lease_expired_for": 2.0},
            AUTO,
            TakeoverAction.WAIT,
            "site A lost 5.0s ago; its lease expired only 2.0s ago (switch_delay 5s)",
        ),
        (
            {"peer_lost_since": 95.0, "peer_lease_expired_for": 6.0},
            AUTO,
            TakeoverAction.WAIT,
            "site A lost 5.0s ago; waiting 10.0s more of takeover_wait 15s for it to have"
            " fenced itself",
        ),
        (
            {"peer_lost_since": 80.0, "peer_lease_expired_for": 9.0},
            AUTO,
            TakeoverAction.RUN,
            "taking over automatically, because site A lost 20.0s ago (takeover_wait 15s) and"
            " its lease expired at the witness 9.0s ago: it has fenced itself",
        ),
        (
            {"peer_lost_since": 80.0, "peer_lease_expired_for": 9.0},
            MANUAL,
            TakeoverAction.READY,
            "ready to take over, because site A lost 20.0s ago (takeover_wait 15s) and its"
            " lease expired at the witness 9.0s ago: it has fenced itself; run"
            " `drorch failover --to B`",
        ),
        (
            {"peer_lost_since": 98.0, "peer_fence_confirmed": True},
            AUTO,
            TakeoverAction.RUN,
            "taking over automatically, because site A was confirmed off by its fence agent",
        ),
        (
            {"peer_lost_since": 80.0, "peer_lease_expired_for": 9.0, "outdated_here": ("dbdata",)},
            AUTO,
            TakeoverAction.REFUSED,
            "the witness marks dbdata at B outdated: promoting would lose writes A made alone"
            " (needs an operator's --force --accept-data-loss)",
        ),
        (
            {"peer_lost_since": 80.0, "peer_lease_expired_for": 9.0, "active_here": True},
            AUTO,
            TakeoverAction.NONE,
            "site B already runs the cluster",
        ),
        (
            {"peer_lost_since": 80.0, "peer_lease_expired_for": 9.0, "maintenance": True},
            AUTO,
            TakeoverAction.NONE,
            "maintenance mode: no takeover",
        ),
    ],
)
def test_takeover_table(
    changes: dict[str, object], mode: FailoverMode, action: TakeoverAction, reason: str
) -> None:
    d = decide_takeover(
        replace(BASE, **changes),  # type: ignore[arg-type]
        takeover_wait=15.0,
        switch_delay=5.0,
        mode=mode,
    )
    assert (d.action, d.reason) == (action, reason)


def test_unconfirmed_fence_never_skips_the_wait() -> None:
    """Whatever the timing, without a confirmed fence nothing runs before takeover_wait."""
    for lost_for in (0.0, 1.0, 7.5, 14.9):
        for expired in (None, 0.0, 5.0, 100.0):
            v = replace(BASE, peer_lost_since=BASE.now - lost_for, peer_lease_expired_for=expired)
            d = decide_takeover(v, takeover_wait=15.0, switch_delay=5.0, mode=AUTO)
            assert d.action is TakeoverAction.WAIT, (lost_for, expired, d)


HANDOVER = "vm1-disk: second-primary of a connected live hand-over (one write order)"


def test_a_covered_hand_over_target_is_fed_and_not_fenced() -> None:
    """The target of a planned live migration runs primary under the peer's lease (issue
    14: B's agent self-fenced the migrated guest): fed, not fenced, and it says why."""
    view = replace(BASE, runs_primary=True, quorum=LOST, lease_renewed=False, covered=HANDOVER)
    feed = decide_feed(view)
    assert feed.feed is True
    assert feed.reason.startswith(
        f"healthy: primary under A's lease during a hand-over ({HANDOVER})"
    )
    fence = decide_self_fence(view, SelfFence.SUICIDE)
    assert fence.fence is False
    assert fence.reason == f"hand-over: A is connected and cannot write ({HANDOVER})"
    # without the cover (link dropped, peer unseen): quorum alone decides, as before
    bare = replace(view, covered=None)
    assert decide_feed(bare).feed is False
    assert decide_self_fence(bare, SelfFence.SUICIDE).fence is True
    # monitors still count under a cover
    sick = replace(view, monitors_ok=False, monitors_reason="vm1 silent")
    assert decide_feed(sick).feed is False
