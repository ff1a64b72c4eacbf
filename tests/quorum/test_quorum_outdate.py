"""Outdate records on a real quorum daemon (mutual TLS on loopback): only the holder may
set or clear them, they are durable before the answer, votes list them per asking site,
and they survive kill -9, restart and restart grace."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from drorch.quorum.client import NotCurrent, NotHolder
from drorch.quorum.outdates import OutdateBook, OutdateRecord
from drorch.quorum.state import read_state
from tests.quorum.conftest import DaemonProcess, InProcessWitness, Pki
from tests.quorum.test_quorum_daemon import GRACE, start


def test_holder_outdates_and_votes_list_the_outdated_copies(witness: InProcessWitness) -> None:
    with witness.connect("c1", "A", "a1") as a, witness.connect("c1", "B", "b1") as b:
        assert a.heartbeat(1, True, 1).granted
        assert b.heartbeat(1, False, 1).outdated == ()
        assert a.outdate("dbdata") == 1
        assert a.outdate("appdata") == 1
        # on disk before the answer: read the file right after it
        records = read_state(witness.state_file).outdates["c1"]
        assert records == {
            "appdata": OutdateRecord("A", 1, 2),
            "dbdata": OutdateRecord("A", 1, 1),
        }
        vote = b.heartbeat(2, False, 1)
        assert vote.outdated == ("appdata", "dbdata")
        assert vote.outdated_since == (("appdata", 1), ("dbdata", 1))
        assert a.heartbeat(2, True, 1).outdated == ()  # A's own copies are the current ones
        assert a.outdate("dbdata") == 1  # idempotent: still "since epoch 1"
        assert a.current("dbdata") == 1
        assert b.heartbeat(3, False, 1).outdated == ("appdata",)
        assert "dbdata" not in read_state(witness.state_file).outdates["c1"]
        assert a.current("dbdata") == 1  # clearing nothing is fine
    with witness.connect("c2", "B", "b1") as other:  # another cluster sees nothing
        assert other.heartbeat(1, False, 1).outdated == ()


def test_a_site_without_the_lease_gets_not_holder_and_keeps_its_session(
    witness: InProcessWitness,
) -> None:
    with witness.connect("c1", "A", "a1") as a, witness.connect("c1", "B", "b1") as b:
        with pytest.raises(NotHolder, match=r"does not hold a live lease.*holder: none"):
            a.outdate("dbdata")  # nobody holds quorum yet
        assert a.heartbeat(1, True, 1).granted
        with pytest.raises(NotHolder, match=r"site B does not hold.*holder: A"):
            b.outdate("dbdata")
        with pytest.raises(NotHolder):
            b.current("dbdata")
        # B's session stays open and usable
        assert b.heartbeat(2, False, 1).holder == "A"
        assert a.outdate("dbdata") == 1
        with pytest.raises(NotHolder):
            b.current("dbdata")  # B cannot clear the record that says its copy is behind
        assert b.heartbeat(3, False, 1).outdated == ("dbdata",)
    assert "c1" in read_state(witness.state_file).outdates


def test_a_released_or_lapsed_lease_may_not_outdate(witness: InProcessWitness) -> None:
    with witness.connect("c1", "A", "a1") as a:
        assert a.heartbeat(1, True, 1).granted
        a.release()
        with pytest.raises(NotHolder):
            a.outdate("dbdata")
        assert a.heartbeat(2, True, 1).granted
        for seq in range(3, 7):  # the 600 ms lease runs out: want:false never renews
            time.sleep(0.2)  # (and a frame every 0.2 s keeps the session under its idle
            a.heartbeat(seq, False, 1)  # deadline of 600 ms)
        with pytest.raises(NotHolder):
            a.outdate("dbdata")


def test_records_survive_kill_and_restart_grace(
    pki: Pki, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    d = start(pki, tmp_path, daemons, init=True)
    with d.connect("c1", "A", "a1") as a:
        assert a.heartbeat(1, True, 1).epoch == 1
        assert a.outdate("dbdata") == 1
    d.proc.send_signal(signal.SIGKILL)  # no persist on the way out: the record was durable
    d.wait()
    d2 = start(pki, tmp_path, daemons, init=False, port=d.port)
    with d2.connect("c1", "B", "b1") as b, d2.connect("c1", "A", "a1") as a:
        vote = b.heartbeat(1, True, 1)  # in grace: no grant to B, and the record stands
        assert (vote.granted, vote.outdated) == (False, ("dbdata",))
        with pytest.raises(NotHolder):
            a.outdate("other")  # the recorded holder has not renewed yet
        assert a.heartbeat(1, True, 1).granted  # renews during grace, keeps epoch 1
        assert a.outdate("other") == 1
    time.sleep(GRACE + 0.1)
    with d2.connect("c1", "B", "b1") as b:  # after grace and A's lapse: B may be granted
        vote = b.heartbeat(2, True, 1)
        assert (vote.granted, vote.epoch, vote.outdated) == (True, 2, ("dbdata", "other"))
        # B holds the lease, but its own copy of dbdata is the outdated one: refused
        with pytest.raises(NotCurrent, match=r"records B's own copy as outdated"):
            b.outdate("dbdata")
        assert b.heartbeat(3, True, 1).granted  # the session goes on
        # after a promotion forced with a data-loss acknowledgement, B claims it
        assert b.outdate("dbdata", force=True) == 2
    assert d2.terminate() == 0
    records = read_state(d2.state_file).outdates["c1"]
    assert records == {"dbdata": OutdateRecord("B", 2, 3), "other": OutdateRecord("A", 1, 2)}


def test_book_fragments_follow_changes() -> None:
    book = OutdateBook({"c1": {"v": OutdateRecord("A", 3)}})
    assert book.fragment("c1", "B") == '["v"],"outdated_since":{"v":3}'
    assert book.fragment("c1", "A") == "[]"
    assert book.outdate("c1", "A", "a", 4)[0] == OutdateRecord("A", 4, 1)
    assert book.fragment("c1", "B") == '["a","v"],"outdated_since":{"a":4,"v":3}'
    assert book.current("c1", "v")[0] is True
    assert book.current("c1", "a")[0] is True
    assert book.fragment("c1", "B") == "[]" and book.durable() == {}
