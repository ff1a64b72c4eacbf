"""The stale-`current` race on a real quorum daemon (mutual TLS on loopback).

The holder's `outdate` (fence-peer hook) and `current` (unfence-peer hook) are separate
processes on separate connections, so nothing orders them. Before record serials: the
peer resynced, the unfence hook started; the link failed again, the fence hook's
`outdate` found the record standing ("already recorded") and the frozen primary went on
writing alone; then the late `current` arrived and cleared the record. The peer's copy
was behind and nothing at the witness said so: its promotion went through unrefused.
Now every `outdate` gives the record a new serial and a `current` naming an older one
is refused (`record_changed`); the record stands."""

from __future__ import annotations

import pytest

from drorch.quorum.client import RecordChanged
from drorch.quorum.outdates import OutdateBook, OutdateRecord
from drorch.quorum.state import QuorumState, read_state
from tests.quorum.conftest import InProcessWitness


def test_a_current_sent_before_a_newer_outdate_leaves_the_record_standing(
    witness: InProcessWitness,
) -> None:
    with witness.connect("c1", "A", "a1") as agent, witness.connect("c1", "B", "b1") as b:
        assert agent.heartbeat(1, True, 1).granted
        with witness.connect("c1", "A", "a1") as fence:  # the link fails: fence-peer
            first = fence.outdate_record("vol")
        # the peer resyncs: the unfence hook connects, with the record it knows of...
        with witness.connect("c1", "A", "a1") as unfence:
            # ...but before its `current` arrives, the link fails again: fence-peer
            with witness.connect("c1", "A", "a1") as fence:
                again = fence.outdate_record("vol")
            assert (again.epoch, again.serial > first.serial) == (first.epoch, True)
            with pytest.raises(RecordChanged, match=r"written again since.*it stands"):
                unfence.current("vol", first.serial)
            assert b.heartbeat(1, False, 1).outdated == ("vol",)  # B still may not promote
            assert "vol" in read_state(witness.state_file).outdates["c1"]
            # the session goes on; the unfence of the newer record clears it
            assert unfence.current("vol", again.serial) == 1
        assert b.heartbeat(2, False, 1).outdated == ()
        assert agent.heartbeat(2, True, 1).granted


def test_a_current_naming_a_serial_of_a_record_already_gone_is_fine(
    witness: InProcessWitness,
) -> None:
    with witness.connect("c1", "A", "a1") as a:
        assert a.heartbeat(1, True, 1).granted
        first = a.outdate_record("vol")
        assert a.current("vol", first.serial) == 1
        assert a.current("vol", first.serial) == 1  # a retry: nothing to clear
        later = a.outdate_record("vol")
        assert later.serial > first.serial  # cleared and written again: never reused
        with pytest.raises(RecordChanged):
            a.current("vol", first.serial)


def test_serials_never_repeat_across_a_restart() -> None:
    book = OutdateBook()
    record, _ = book.outdate("c1", "A", "v", 1)
    assert book.current("c1", "v", record.serial)[0]
    state = QuorumState(1000, 500, {}, book.durable(), book.serial)
    reloaded = QuorumState.from_json(state.to_json(), "test")
    again = OutdateBook(reloaded.outdates, reloaded.outdate_serial)
    assert again.outdate("c1", "A", "v", 1)[0].serial == record.serial + 1
    # a state written before serials: its records count as serial 0, new ones go on
    old = OutdateBook({"c1": {"v": OutdateRecord("A", 3)}})
    assert old.outdate("c1", "A", "w", 3)[0].serial == 1
