"""The client's lease: pure tracker with a FakeClock, and the LeaseKeeper against a real
witness on loopback."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from drorch.quorum.client import QuorumConnection
from drorch.quorum.keeper import LeaseKeeper
from drorch.quorum.lease import Change, LeaseEvent, LeaseTracker, default_safety_margin
from drorch.quorum.messages import Vote
from drorch.testing.clock import FakeClock
from tests.quorum.conftest import (
    LEASE_MS,
    SWITCH_DELAY_MS,
    DaemonProcess,
    InProcessWitness,
    Pki,
    Witness,
    config_text,
    free_port,
)


def granted(seq: int, epoch: int = 1) -> Vote:
    return Vote(seq, True, epoch, "A", 3000)


def test_held_until_send_time_plus_lease_minus_margin() -> None:
    clock = FakeClock()
    t = LeaseTracker(safety_margin=0.5)
    sent = clock.monotonic()
    t.sent(1, True, sent)
    clock.advance(0.2)  # the vote takes 200 ms to come back: it does not extend the lease
    (event,) = t.vote(granted(1), clock.monotonic())
    assert event.change is Change.GAINED and event.epoch == 1
    assert "held until heartbeat send time + 3s lease - 0.5s margin" in event.reason
    assert t.held_until == pytest.approx(sent + 3.0 - 0.5)
    clock.advance(2.3 - 0.001)
    assert t.holds(clock.monotonic()) and t.tick(clock.monotonic()) is None
    clock.advance(0.002)
    lost = t.tick(clock.monotonic())
    assert lost is not None and lost.change is Change.LOST
    assert lost.reason == "lease ran out: no granted vote renewed it in time"
    assert lost.at == pytest.approx(sent + 2.5)  # when it ran out, not when it was noticed
    assert event.held_until == pytest.approx(sent + 2.5)
    assert not t.holds(clock.monotonic())
    assert t.tick(clock.monotonic()) is None  # reported once


def test_renewals_extend_and_a_denial_ends_at_once() -> None:
    clock = FakeClock()
    t = LeaseTracker(safety_margin=0.1)
    t.sent(1, True, clock.monotonic())
    assert [e.change for e in t.vote(granted(1), clock.monotonic())] == [Change.GAINED]
    clock.advance(1.0)
    t.sent(2, True, clock.monotonic())
    assert t.vote(granted(2), clock.monotonic()) == []
    assert t.held_until == pytest.approx(clock.monotonic() + 2.9)
    t.sent(3, True, clock.monotonic())
    (event,) = t.vote(Vote(3, False, 2, "B", 3000), clock.monotonic())
    assert event == LeaseEvent(
        Change.LOST, 2, "the witness says quorum is not ours (holder B)", at=clock.monotonic()
    )
    assert t.epoch == 2


def test_state_queries_and_undatable_votes_never_extend() -> None:
    clock = FakeClock()
    t = LeaseTracker(safety_margin=0.1)
    t.sent(1, False, clock.monotonic())
    assert t.vote(granted(1), clock.monotonic()) == []  # want:false proves nothing ahead
    assert t.vote(granted(99), clock.monotonic()) == []  # never sent
    assert not t.holds(clock.monotonic())


def test_a_vote_too_late_to_count_is_ignored_and_expiry_is_reported_first() -> None:
    clock = FakeClock()
    t = LeaseTracker(safety_margin=0.1)
    t.sent(1, True, clock.monotonic())
    t.vote(granted(1), clock.monotonic())
    t.sent(2, True, clock.monotonic())
    clock.advance(5.0)
    events = t.vote(granted(2), clock.monotonic())
    assert [e.change for e in events] == [Change.LOST]
    assert not t.holds(clock.monotonic())


def test_default_margin() -> None:
    assert default_safety_margin(3.0) == pytest.approx(0.3)
    assert default_safety_margin(0.2) == pytest.approx(0.05)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[float, LeaseEvent]] = []
        self.changed = threading.Condition()

    def __call__(self, event: LeaseEvent) -> None:
        with self.changed:
            self.events.append((time.monotonic(), event))
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[float, LeaseEvent]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.events) >= count, timeout), self.events
            return list(self.events)


def keeper(witness: Witness, site: str, rec: Recorder) -> LeaseKeeper:
    def connect() -> QuorumConnection:
        name = f"c1-{site.lower()}"
        return QuorumConnection(
            witness.server,
            witness.pki.fingerprints["server"],
            witness.pki.cert(name),
            witness.pki.key(name),
            "c1",
            site,
            f"{site}1",
            timeout=2.0,
        )

    return LeaseKeeper(connect, on_gained=rec, on_lost=rec, reconnect_delay=0.1)


def test_keeper_sees_the_loss_before_the_other_site_is_granted(
    witness: InProcessWitness,
) -> None:
    rec_a, rec_b = Recorder(), Recorder()
    a, b = keeper(witness, "A", rec_a), keeper(witness, "B", rec_b)
    a.start()
    try:
        ((_, gained),) = rec_a.wait_for(1)
        assert gained.change is Change.GAINED and gained.epoch == 1
        assert a.holds()
        b.start()
        time.sleep(0.5)
        assert not b.holds() and rec_b.events == []
        a.want = False  # A stops renewing (as if its heartbeats were lost)
        (_, (_, lost)) = rec_a.wait_for(2)
        assert lost.change is Change.LOST
        ((_, b_gained),) = rec_b.wait_for(1)
        assert (b_gained.change, b_gained.epoch) == (Change.GAINED, 2)
        # A's lease ended (by its own reckoning) before B was granted, by at least the
        # switch delay: time for A to fence itself
        assert b_gained.at - lost.at >= SWITCH_DELAY_MS / 1000
        assert not a.holds() and b.holds()
    finally:
        a.stop()
        b.stop()


def test_keeper_release_hands_over_at_once(witness: InProcessWitness) -> None:
    rec_a, rec_b = Recorder(), Recorder()
    a, b = keeper(witness, "A", rec_a), keeper(witness, "B", rec_b)
    a.start()
    try:
        rec_a.wait_for(1)
        b.start()
        time.sleep(0.3)
        assert rec_b.events == []
        released = time.monotonic()
        assert a.release()
        assert rec_a.wait_for(2)[1][1].reason == "released on purpose"
        ((gained_at, gained),) = rec_b.wait_for(1)
        assert gained.change is Change.GAINED and gained.epoch == 2
        # far sooner than lease + switch delay
        assert gained_at - released < (LEASE_MS + SWITCH_DELAY_MS) / 1000
        assert not a.holds() and b.holds()
    finally:
        a.stop()
        b.stop()


def test_keeper_loses_on_time_when_the_witness_goes_silent(witness: InProcessWitness) -> None:
    rec = Recorder()
    a = keeper(witness, "A", rec)
    a.start()
    try:
        rec.wait_for(1)
        last_granted_send = time.monotonic()
        witness.loop.call_soon_threadsafe(witness.quorum_server._shutdown)
        (_, (lost_at, lost)) = rec.wait_for(2)
        lease = LEASE_MS / 1000
        # held at most until (last send) + lease - margin; the last send was before now
        assert lost_at <= last_granted_send + lease + 0.3
        assert lost.change is Change.LOST
    finally:
        a.stop()


def test_keeper_rides_a_witness_restart_keeping_its_epoch(
    pki: Pki, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    port = free_port()
    path = tmp_path / "quorumd.yaml"
    path.write_text(config_text(pki, port))
    first = DaemonProcess(pki, port, path, init=True)
    daemons.append(first)
    first.wait_listening()
    rec_a, rec_b = Recorder(), Recorder()
    a, b = keeper(first, "A", rec_a), keeper(first, "B", rec_b)
    a.start()
    try:
        ((_, gained),) = rec_a.wait_for(1)
        assert gained.epoch == 1
        b.start()
        assert first.terminate() == 0
        time.sleep(LEASE_MS / 1000 + 0.2)  # down for longer than a lease
        second = DaemonProcess(pki, port, path, init=False)
        daemons.append(second)
        second.wait_listening()
        # A lost its lease while the witness was down, then renewed during restart grace
        events = rec_a.wait_for(3, timeout=15)
        assert [e.change for _, e in events] == [Change.GAINED, Change.LOST, Change.GAINED]
        assert events[2][1].epoch == 1  # a renewal of the recorded holder: same epoch
        time.sleep((LEASE_MS + SWITCH_DELAY_MS) / 1000 + 0.3)  # past the grace
        assert a.holds() and not b.holds() and rec_b.events == []
        # answering again clears the last error (the agent reads it as "unreachable")
        assert a.last_error is None and b.last_error is None
    finally:
        a.stop()
        b.stop()


def test_keeper_from_the_cluster_models_witness(witness: InProcessWitness, pki: Pki) -> None:
    from drorch.model.types import Witness as WitnessModel
    from drorch.quorum.client import QuorumError

    model = WitnessModel(witness.server, pki.fingerprints["server"], "c2-b.crt", "c2-b.key")
    rec = Recorder()
    k = LeaseKeeper.for_witness(
        model, "c2", "B", "b1", rec, rec, nodes=lambda: 2, base_dir=pki.folder
    )
    k.start()
    try:
        ((_, gained),) = rec.wait_for(1)
        assert (gained.change, gained.epoch) == (Change.GAINED, 1)
        assert k.holds() and k.epoch == 1
    finally:
        k.stop()
    with pytest.raises(QuorumError, match="no client cert"):
        LeaseKeeper.for_witness(WitnessModel(witness.server, "sha256:x"), "c2", "B", "b", rec, rec)


def test_the_loss_is_reported_on_time_while_a_reconnect_hangs(witness: InProcessWitness) -> None:
    import socket

    rec = Recorder()
    a = keeper(witness, "A", rec)  # its connects wait up to 2 s for a TLS handshake
    a.start()
    blackhole = socket.socket()
    try:
        rec.wait_for(1)
        witness.stop()  # the witness goes away; its port now answers TCP and nothing else
        blackhole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blackhole.bind(("127.0.0.1", witness.port))
        blackhole.listen(16)
        (_, (noticed, lost)) = rec.wait_for(2, timeout=5)
        assert lost.change is Change.LOST
        assert lost.reason == "lease ran out: no granted vote renewed it in time"
        assert noticed - lost.at < 0.25, "the loss was reported late"
        assert not a.holds()
    finally:
        a.stop()
        blackhole.close()
