"""`drorch repl resolve` by site, driver-independent: the decision over the emulated DRBD
pair, the pure decision table and its reasons, unreachable sides, picking each site's
replica, and the bounded wait. (The real pyrepl split brain is in
tests/pyrepl/test_pyrepl_resolve_site.py.)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from drorch.environment import Environment
from drorch.model.reports import Severity
from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationStatus,
    Replicator,
    Role,
    SplitBrain,
    VerifyResult,
)
from drorch.replication.resolve import (
    Observed,
    UnknownTarget,
    carry_out,
    decide_resolve,
    observe,
    pick_sides,
)
from drorch.testing.clock import FakeClock


def test_emulated_drbd_resolves_by_site() -> None:
    """DRBD says nothing of split brain in its status: both sides StandAlone with
    different current generations is the sign. Decided and carried out over the
    emulated DRBD pair through the same module, with a fake clock."""
    from drorch.replication.drbd.driver import DrbdReplicator
    from drorch.testing.fake_drbd import FakeDrbdPair
    from tests.drbd.clusters import two_site_cluster

    cluster = two_site_cluster()
    sides = pick_sides(cluster, "r0", "B")
    fake = FakeDrbdPair(sides.volume)
    env = Environment(clock=FakeClock(), runners=dict(fake.runners))
    a = DrbdReplicator(sides.volume, sides.survivor, env, connect_wait=0.1)
    b = DrbdReplicator(sides.volume, sides.victim, env, connect_wait=0.1)
    a.up()
    b.up()
    a.promote(1)
    b.disconnect()  # a plain disconnect: a1 keeps Connecting to b1
    plain = _decide(sides, a, b)
    assert [r.code for r in plain.blocking] == ["not-split-brain"]
    assert "(peer a1 (site A) is Connecting" in plain.blocking[0].message

    a.disconnect()
    b.promote()  # both primary while apart: new generations on both sides
    b.demote()
    a.connect()
    with pytest.raises(SplitBrain):
        b.connect()
    plan = _decide(sides, a, b)
    assert plan.may_run, plan.reports
    assert "both sides are StandAlone with different current generations" in plan.reason
    out = carry_out(plan, b, a, clock=env.clock, resync_wait=60.0)
    assert out.settled
    assert fake.nodes["b1"].generation == fake.nodes["a1"].generation
    assert ["drbdadm", "connect", "--discard-my-data", "r0"] in [
        list(c) for c in fake.nodes["b1"].calls
    ]


def _decide(sides: Any, survivor: Replicator, victim: Replicator) -> Any:
    return decide_resolve(
        "r0",
        observe(sides.victim_site, sides.victim.name, lambda: victim),
        observe(sides.survivor_site, sides.survivor.name, lambda: survivor),
        accept_data_loss=True,
    )


# ---------------------------------------------------------------------- the pure decision
def status(**kw: Any) -> ReplicationStatus:
    base = ReplicationStatus(
        name="vol",
        role=Role.SECONDARY,
        disk=DiskState.UP_TO_DATE,
        connection=ConnState.STANDALONE,
        mode="sync",
        generation={"current": "AAAA"},
        out_of_sync_bytes=65536,
    )
    return replace(base, **kw)


SB = {"split_brain": {"reason": "both changed since base 1111"}}


@pytest.mark.parametrize(
    ("victim", "survivor", "accept", "codes", "reason"),
    [
        (status(extra=SB), status(extra=SB), True, [], "the driver detected split brain at "
         "the last handshake (both changed since base 1111)"),
        (status(extra=SB), status(extra=SB), False, ["data-loss"], "split brain between"),
        (status(connection=ConnState.CONNECTED), status(connection=ConnState.CONNECTED), True,
         ["not-split-brain"], "no split brain to resolve"),
        (status(extra={"split_brain": None}), status(extra={"split_brain": None}), True,
         ["not-split-brain"], "no split brain to resolve"),
        (status(extra=SB, role=Role.PRIMARY), status(extra=SB), True, ["victim-primary"],
         "split brain between"),
        (status(extra=SB), status(extra=SB, disk=DiskState.OUTDATED), True,
         ["survivor-not-up-to-date"], "split brain between"),
        # no split-brain field (DRBD): judged from both sides
        (status(), status(generation={"current": "BBBB"}), True, [],
         "both sides are StandAlone with different current generations (AAAA vs BBBB)"),
        (status(), status(), True, ["not-split-brain"], "no split brain to resolve"),
        (status(), status(connection=ConnState.CONNECTING, generation={"current": "BBBB"}),
         True, ["not-split-brain"], "no split brain to resolve"),
    ],
)  # fmt: skip
def test_decision_table(
    victim: ReplicationStatus,
    survivor: ReplicationStatus,
    accept: bool,
    codes: list[str],
    reason: str,
) -> None:
    plan = decide_resolve(
        "vol",
        Observed("B", "b1", victim),
        Observed("A", "a1", survivor),
        accept_data_loss=accept,
    )
    assert [r.code for r in plan.blocking] == codes
    assert reason in plan.reason
    assert plan.may_run is (not codes)
    assert plan.only_data_loss is (codes == ["data-loss"])
    if plan.may_run:
        assert [(r.code, r.severity) for r in plan.reports] == [("data-loss", Severity.WARNING)]


def test_unreachable_side_is_a_report() -> None:
    plan = decide_resolve(
        "vol",
        Observed("B", "b1", None, "ControlUnreachable: no pyrepl daemon answers"),
        Observed("A", "a1", status(extra=SB)),
        accept_data_loss=True,
    )
    assert [str(r) for r in plan.blocking] == [
        "victim-unreachable: cannot ask b1 (site B) for the state of vol: ControlUnreachable: "
        "no pyrepl daemon answers"
    ]


def test_pick_sides_names_the_replica_of_each_site() -> None:
    from tests.drbd.clusters import two_site_cluster

    sides = pick_sides(two_site_cluster(), "r0", "A")
    assert (sides.victim.name, sides.survivor_site, sides.survivor.name) == ("a1", "B", "b1")
    with pytest.raises(UnknownTarget, match=r"no site 'a' in cluster c1 \(sites: A, B\); did "):
        pick_sides(two_site_cluster(), "r0", "a")


def test_wait_is_bounded_by_the_clock() -> None:
    """A resync that never ends: carry_out stops following it after resync_wait."""

    class Stuck(Replicator):
        """Starts a resync on resolve/connect that never finishes."""

        name = "vol"

        def __init__(self, st: ReplicationStatus) -> None:
            self.st = st
            self.calls: list[str] = []

        def status(self) -> ReplicationStatus:
            return self.st

        def resolve_discard_local(self) -> None:
            self.calls.append("resolve")
            self.st = replace(self.st, connection=ConnState.SYNC_TARGET)

        def connect(self) -> None:
            self.calls.append("connect")
            self.st = replace(self.st, connection=ConnState.SYNC_SOURCE)

        def up(self) -> None: ...
        def down(self) -> None: ...
        def demote(self) -> None: ...
        def disconnect(self) -> None: ...

        def promote(self, epoch: int | None = None, **_: bool) -> None: ...

        def verify(self) -> VerifyResult:
            raise AssertionError("not called")

    victim, survivor = Stuck(status(extra=SB)), Stuck(status(extra=SB))
    plan = decide_resolve(
        "vol",
        Observed("B", "b1", victim.st),
        Observed("A", "a1", survivor.st),
        accept_data_loss=True,
    )
    clock = FakeClock()
    seen: list[ConnState] = []
    out = carry_out(
        plan,
        victim,
        survivor,
        clock=clock,
        resync_wait=5.0,
        on_progress=lambda st: seen.append(st.connection),
    )
    assert (victim.calls, survivor.calls) == (["resolve"], ["connect"])
    assert out.waited and not out.settled
    assert sum(clock.sleeps) == pytest.approx(5.0)
    assert seen and set(seen) == {ConnState.SYNC_TARGET}
    with pytest.raises(ValueError, match="refusing to act on a refused plan"):
        carry_out(
            decide_resolve(
                "vol",
                Observed("B", "b1", victim.st),
                Observed("A", "a1", survivor.st),
                accept_data_loss=True,
            ),
            victim,
            survivor,
            clock=clock,
            resync_wait=None,
        )
