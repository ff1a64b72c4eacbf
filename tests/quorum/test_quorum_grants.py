"""The grant rules as a pure state machine, driven by a FakeClock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drorch.quorum.grants import DurableLease, GrantBook
from drorch.testing.clock import FakeClock

LEASE, DELAY = 3.0, 2.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def book() -> GrantBook:
    return GrantBook(LEASE, DELAY)


def test_first_grant_goes_to_the_first_asker_with_epoch_1(
    book: GrantBook, clock: FakeClock
) -> None:
    a = book.heartbeat("c1", "A", True, clock.monotonic())
    assert (a.granted, a.epoch, a.holder, a.persist) == (True, 1, "A", True)
    assert a.reason == "granted to A at epoch 1: the cluster never had a holder"
    b = book.heartbeat("c1", "B", True, clock.monotonic())
    assert (b.granted, b.epoch, b.holder, b.persist) == (False, 1, "A", False)
    assert b.reason.startswith("A holds a live lease for another 3.000s")


def test_renewal_keeps_the_epoch_and_is_not_persisted(book: GrantBook, clock: FakeClock) -> None:
    book.heartbeat("c1", "A", True, clock.monotonic())
    for _ in range(10):
        clock.advance(1.0)
        d = book.heartbeat("c1", "A", True, clock.monotonic())
        assert (d.granted, d.epoch, d.persist) == (True, 1, False)
        assert d.reason == "A renewed its lease"
    assert book.clusters["c1"].lease_until == pytest.approx(clock.monotonic() + LEASE)


def test_want_false_neither_grants_nor_renews(book: GrantBook, clock: FakeClock) -> None:
    q = book.heartbeat("c1", "A", False, clock.monotonic())
    assert (q.granted, q.epoch, q.holder, q.persist) == (False, 0, None, False)
    assert q.reason == "state query (want:false): nothing changes"
    book.heartbeat("c1", "A", True, clock.monotonic())
    clock.advance(2.9)
    assert book.heartbeat("c1", "A", False, clock.monotonic()).granted is True
    clock.advance(0.1)  # the want:false at 2.9 did not renew
    d = book.heartbeat("c1", "A", False, clock.monotonic())
    assert (d.granted, d.holder) == (False, None)


def test_lapsed_lease_frees_the_cluster_only_after_the_switch_delay(
    book: GrantBook, clock: FakeClock
) -> None:
    book.heartbeat("c1", "A", True, clock.monotonic())
    clock.advance(LEASE + DELAY - 0.001)
    b = book.heartbeat("c1", "B", True, clock.monotonic())
    assert (b.granted, b.holder) == (False, None)
    assert "switch delay leaves 0.001s" in b.reason
    clock.advance(0.001)
    b = book.heartbeat("c1", "B", True, clock.monotonic())
    assert (b.granted, b.epoch, b.holder, b.persist) == (True, 2, "B", True)
    assert (
        b.reason == "granted to B at epoch 2: the lease of A expired at least the switch delay ago"
    )


def test_the_site_that_lapsed_also_waits_the_switch_delay(
    book: GrantBook, clock: FakeClock
) -> None:
    book.heartbeat("c1", "A", True, clock.monotonic())
    clock.advance(LEASE)
    assert book.heartbeat("c1", "A", True, clock.monotonic()).granted is False
    clock.advance(DELAY)
    a = book.heartbeat("c1", "A", True, clock.monotonic())
    assert (a.granted, a.epoch) == (True, 2)


def test_release_lets_the_other_site_in_at_once(book: GrantBook, clock: FakeClock) -> None:
    book.heartbeat("c1", "A", True, clock.monotonic())
    r = book.release("c1", "A", clock.monotonic())
    assert (r.granted, r.epoch, r.holder, r.persist) == (False, 1, None, True)
    assert r.reason == "A released quorum at epoch 1"
    b = book.heartbeat("c1", "B", True, clock.monotonic())
    assert (b.granted, b.epoch) == (True, 2)
    assert b.reason.endswith("the previous holder released quorum on purpose")


def test_release_from_a_non_holder_changes_nothing(book: GrantBook, clock: FakeClock) -> None:
    book.heartbeat("c1", "A", True, clock.monotonic())
    r = book.release("c1", "B", clock.monotonic())
    assert (r.granted, r.holder, r.persist) == (False, "A", False)
    assert r.reason == "release from B, which does not hold quorum: ignored"
    assert book.heartbeat("c1", "A", True, clock.monotonic()).granted is True


def test_clusters_are_independent(book: GrantBook, clock: FakeClock) -> None:
    assert book.heartbeat("c1", "A", True, clock.monotonic()).granted
    assert book.heartbeat("c2", "B", True, clock.monotonic()).granted
    assert book.durable() == {"c1": DurableLease(1, "A"), "c2": DurableLease(1, "B")}


def restarted(clock: FakeClock, holder: str | None = "A", epoch: int = 5) -> GrantBook:
    return GrantBook(
        LEASE,
        DELAY,
        durable={"c1": DurableLease(epoch, holder)},
        grace_until=clock.monotonic() + LEASE + DELAY,
    )


def test_restart_grace_only_the_recorded_holder_renews_and_keeps_its_epoch(
    clock: FakeClock,
) -> None:
    book = restarted(clock)
    q = book.heartbeat("c1", "A", False, clock.monotonic())
    assert (q.granted, q.epoch, q.holder) == (False, 5, "A")  # not granted until it renews
    b = book.heartbeat("c1", "B", True, clock.monotonic())
    assert (b.granted, b.holder) == (False, "A")
    assert b.reason == "restart grace: only the recorded holder A may renew for another 5.000s"
    a = book.heartbeat("c1", "A", True, clock.monotonic())
    assert (a.granted, a.epoch, a.persist) == (True, 5, False)
    assert a.reason == "recorded holder A renewed during restart grace"


def test_holder_silent_through_grace_counts_as_lapsed_long_ago(clock: FakeClock) -> None:
    book = restarted(clock)
    clock.advance(LEASE + DELAY - 0.01)
    assert book.heartbeat("c1", "B", True, clock.monotonic()).granted is False
    clock.advance(0.01)
    b = book.heartbeat("c1", "B", True, clock.monotonic())
    assert (b.granted, b.epoch, b.holder) == (True, 6, "B")


def test_release_during_grace_does_not_shorten_it(clock: FakeClock) -> None:
    book = restarted(clock)
    book.heartbeat("c1", "A", True, clock.monotonic())
    r = book.release("c1", "A", clock.monotonic())
    assert r.persist and r.reason.endswith("restart grace still holds back new grants")
    clock.advance(1.0)
    assert book.heartbeat("c1", "B", True, clock.monotonic()).granted is False
    assert book.heartbeat("c1", "A", True, clock.monotonic()).granted is False
    clock.advance(LEASE + DELAY - 1.0)
    b = book.heartbeat("c1", "B", True, clock.monotonic())
    assert (b.granted, b.epoch) == (True, 6)


def test_grace_with_no_recorded_holder_still_grants_nothing(clock: FakeClock) -> None:
    book = restarted(clock, holder=None, epoch=2)
    assert book.heartbeat("c1", "A", True, clock.monotonic()).granted is False
    assert book.heartbeat("new-cluster", "A", True, clock.monotonic()).granted is False
    clock.advance(LEASE + DELAY)
    d = book.heartbeat("c1", "A", True, clock.monotonic())
    assert (d.granted, d.epoch) == (True, 3)


def test_holder_renewing_in_grace_keeps_the_lease_past_grace(clock: FakeClock) -> None:
    book = restarted(clock)
    clock.advance(LEASE + DELAY - 1.0)
    book.heartbeat("c1", "A", True, clock.monotonic())
    clock.advance(2.0)  # grace over, A's lease (renewed 2 s ago) still live
    assert book.heartbeat("c1", "B", True, clock.monotonic()).granted is False
    assert book.heartbeat("c1", "A", True, clock.monotonic()).granted is True
    assert book.live_holder("c1", clock.monotonic()) == "A"


def test_bad_timings_are_refused() -> None:
    with pytest.raises(ValueError):
        GrantBook(0, 1)


# The central safety property, over random schedules: at no instant do two sites of one
# cluster hold a live lease, and epochs never go backwards.
ops = st.lists(
    st.tuples(
        st.sampled_from(["hb", "hb", "hb", "query", "release"]),
        st.sampled_from(["A", "B"]),
        st.floats(0, 3.0),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops, st.booleans())
def test_never_two_holders_and_epochs_only_grow(
    schedule: list[tuple[str, str, float]], after_restart: bool
) -> None:
    clock = FakeClock()
    book = restarted(clock) if after_restart else GrantBook(LEASE, DELAY)
    granted_until: dict[str, float] = {}
    last_epoch = book.clusters["c1"].epoch if after_restart else 0
    for op, site, dt in schedule:
        clock.advance(dt)
        now = clock.monotonic()
        if op == "release":
            d = book.release("c1", site, now)
            if d.persist:
                granted_until.pop(site, None)
        else:
            d = book.heartbeat("c1", site, op == "hb", now)
        assert d.epoch >= last_epoch
        last_epoch = d.epoch
        if d.granted and op == "hb":
            granted_until[site] = now + LEASE
            other = "B" if site == "A" else "A"
            assert granted_until.get(other, -1.0) <= now, "two live leases at once"
            if d.persist and other in granted_until:  # a new grant after the other lapsed
                assert now >= granted_until[other] + DELAY, "switch delay not honoured"
                del granted_until[other]
