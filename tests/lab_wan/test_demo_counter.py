"""The demo's audit of the guest's serial log and the agents' logs (drorch.lab.counter)."""

from __future__ import annotations

from pathlib import Path

from drorch.lab.counter import audit_counter, self_fences


def _log(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def test_a_live_move_that_keeps_counting_loses_nothing() -> None:
    data = _log("LABVM BOOTED uptime=3 start_counter=0", "HEARTBEAT 1", "ACKED 1", "HEARTBEAT 2")
    data += _log("ACKED 2", "HEARTBEAT 3", "ACKED 3")
    audit = audit_counter(data)
    assert (audit.acked_lost, audit.beats_missing, audit.unacked) == (0, 0, 0)
    assert audit.boots == (0,) and audit.last_acked == 3


def test_a_boot_below_the_last_acknowledged_value_counts_the_difference() -> None:
    data = _log("HEARTBEAT 7", "ACKED 7", "HEARTBEAT 8", "ACKED 8", "HEARTBEAT 9")
    data += _log("noise", "LABVM BOOTED uptime=3.6 start_counter=6", "HEARTBEAT 7", "ACKED 7")
    audit = audit_counter(data)
    assert audit.acked_lost == 2  # 7 and 8 were acknowledged; 9 never was
    assert audit.unacked == 1 and audit.boots == (6,)


def test_gaps_and_failed_writes_within_one_boot() -> None:
    data = _log("HEARTBEAT 1", "ACKED 1", "HEARTBEAT 2", "HEARTBEAT 5", "ACKED 5")
    audit = audit_counter(data)
    assert audit.beats_missing == 2 and audit.unacked == 1 and audit.acked_lost == 0


def test_only_the_stretch_since_the_offset_is_counted() -> None:
    before = _log("HEARTBEAT 1", "ACKED 1", "HEARTBEAT 2", "HEARTBEAT 3", "ACKED 3")
    after = _log("LABVM BOOTED uptime=3 start_counter=3", "HEARTBEAT 4", "ACKED 4")
    audit = audit_counter(before + after, since=len(before))
    assert (audit.acked_lost, audit.beats_missing, audit.unacked) == (0, 0, 0)
    assert audit_counter(before + after).unacked == 1


def test_self_fences_are_read_from_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    old = "x INFO self-fence: lost quorum (no witness)\n"
    log.write_text(old + "x INFO watchdog armed\nx INFO self-fence: lost quorum (again)\n")
    assert self_fences(log, len(old)) == ["x INFO self-fence: lost quorum (again)"]
    assert self_fences(tmp_path / "missing.log") == []
