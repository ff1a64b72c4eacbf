"""ShippingState: the primary's hot/in-flight/resync bookkeeping keeps its invariants
under any sequence of calls, and each call does what the write path, the link, the
resync and verify rely on."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from drorch.replication.pyrepl.shipping import ShippingState

regions = st.lists(st.integers(0, 15), max_size=4)


class Shipping(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.s = ShippingState()
        self.sent: list[list[int]] = []  # frames in flight, oldest first

    @rule(rs=regions)
    def write_shipped(self, rs: list[int]) -> None:
        self.s.travelling(rs)
        self.s.sent(rs)
        self.sent.append(rs)

    @rule(rs=regions, ahead=st.booleans())
    def write_not_shipped(self, rs: list[int], ahead: bool) -> None:
        self.s.not_shipped(rs, ahead=ahead)
        assert not set(rs) & self.s.hot
        if ahead:
            assert set(rs) <= self.s.todo_set

    @rule(resync=st.booleans())
    def ack_oldest(self, resync: bool) -> None:
        if self.sent:
            rs = self.sent.pop(0)
            for r in self.s.acked(rs, resync=resync):
                assert r not in self.s.inflight and r not in self.s.todo_set

    @rule(rs=regions)
    def start_resync(self, rs: list[int]) -> None:
        self.s.start_resync(rs)
        assert not self.s.hot and list(self.s.queued()) == list(dict.fromkeys(rs))

    @rule()
    def next_region(self) -> None:
        before = self.s.pending
        r = self.s.next_region()
        assert (r is None) == (before == 0)
        if r is not None:
            assert r not in self.s.todo_set

    @rule()
    def settle(self) -> None:
        for r in self.s.settled():
            assert not self.s.inflight.get(r) and r not in self.s.hot

    @rule()
    def lose_link(self) -> None:
        in_flight = {r for rs in self.sent for r in rs}
        dirty, clear = self.s.lost()
        assert set(dirty) == in_flight and not set(clear) & in_flight
        self.sent.clear()
        assert not (self.s.hot or self.s.inflight or self.s.todo)

    @invariant()
    def invariants_hold(self) -> None:
        self.s.check()
        counts: dict[int, int] = {}
        for rs in self.sent:
            for r in rs:
                counts[r] = counts.get(r, 0) + 1
        assert self.s.inflight == counts


TestShipping = Shipping.TestCase
TestShipping.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_a_resync_ack_clears_only_what_is_not_queued_again_nor_in_flight() -> None:
    s = ShippingState()
    s.start_resync([1, 2, 3])
    assert [s.next_region(), s.next_region()] == [1, 2]
    s.sent([1])
    s.sent([2])
    s.sent([2])  # an application write to region 2 travels too
    s.queue([1])  # written while ahead: region 1 must be sent again
    assert s.acked([1], resync=True) == []  # queued again: its bit stays
    assert s.acked([2], resync=True) == []  # still in flight: activity now
    assert s.hot == {2}
    assert s.acked([2], resync=False) == []
    assert s.settled() == [2] and not s.hot
    s.check()


def test_activity_never_hides_a_region_that_differs() -> None:
    s = ShippingState()
    s.travelling([4, 5])
    assert s.activity_regions == 2
    s.not_shipped([4], ahead=False)
    s.differs(5)
    assert s.activity_regions == 0
    s.queue([6])
    s.travelling([6])  # queued for resync: a real difference, not activity
    assert s.hot == set()
