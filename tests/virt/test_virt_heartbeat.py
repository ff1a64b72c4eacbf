"""The type-3 heartbeat monitor: parser, tracker (pure) and the serial log tail (files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drorch.monitor.heartbeat import (
    MAX_LINE,
    HeartbeatParser,
    HeartbeatPolicy,
    HeartbeatStatus,
    HeartbeatTracker,
)
from drorch.monitor.serial_log import HeartbeatMonitor, SerialLogTail
from drorch.testing.clock import FakeClock

# -- parser -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "beats"),
    [
        (b"HEARTBEAT 1 uptime=1.02\nHEARTBEAT 2 uptime=2.03\n", [1, 2]),
        (b"HEARTBEAT 3\r\nHEARTBEAT 4\r\n", [3, 4]),
        (b"[    3.201] virtio_blk loaded HEARTBEAT 7 uptime=3.2\n", [7]),
        (b"LABVM BOOTED uptime=0.9 cmdline=console=ttyS0\n", []),
        (b"XHEARTBEAT 3\nHEARTBEAT\nHEARTBEAT x\nHEARTBEAT -1\nheartbeat 2\n", []),
        (b"\x00\xff\xfe\x1b[2J garbage \x80\nHEARTBEAT 9\n", [9]),
        (b"HEARTBEAT 5 uptime=5\nHEARTBEAT 6", [5]),  # the last line is not complete yet
    ],
)
def test_virt_heartbeat_parser_lines(data: bytes, beats: list[int]) -> None:
    assert HeartbeatParser().feed(data) == beats


def test_virt_heartbeat_parser_drops_an_endless_line() -> None:
    parser = HeartbeatParser()
    assert parser.feed(b"x" * (MAX_LINE + 10)) == []
    assert parser.dropped_bytes == MAX_LINE + 10
    assert parser.feed(b"\nHEARTBEAT 4\n") == [4]


@given(
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=30),
    st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=50),
)
def test_virt_heartbeat_parser_any_chunking_gives_the_same_beats(
    counters: list[int], cuts: list[int]
) -> None:
    stream = b"".join(b"noise\nHEARTBEAT %d uptime=1\n" % n for n in counters)
    parser, beats, pos, i = HeartbeatParser(), [], 0, 0
    while pos < len(stream):
        size = cuts[i % len(cuts)]
        beats += parser.feed(stream[pos : pos + size])
        pos, i = pos + size, i + 1
    assert beats == counters


# -- tracker ------------------------------------------------------------------------------

POLICY = HeartbeatPolicy(min_beats=3, window=10.0, startup_grace=30.0)


def run(
    beats: list[tuple[float, list[int]]],
    now: float,
    *,
    baseline: int | None = None,
    expect_continuation: bool = False,
) -> HeartbeatTracker:
    tracker = HeartbeatTracker(0.0, POLICY, baseline, expect_continuation)
    for at, counters in beats:
        tracker.observe(counters, at)
    return tracker


TRACKER_CASES = [
    pytest.param([(1, [1]), (2, [2]), (3, [3])], 3.0, {}, HeartbeatStatus.HEALTHY,
                 "heartbeat rising: 3 beats in the last 10 s, n 1 → 3", id="rising"),
    pytest.param([(1, [1]), (2, [2])], 2.0, {}, HeartbeatStatus.WAITING,
                 "waiting for heartbeats: 2 of 3 in the last 10 s (28.0 s of the start-up "
                 "grace left)", id="too-few-in-grace"),
    pytest.param([], 31.0, {}, HeartbeatStatus.FAILED,
                 "no heartbeat within the 30 s start-up grace", id="never-beat"),
    pytest.param([(t, [int(t)]) for t in range(1, 21)], 32.5, {}, HeartbeatStatus.FAILED,
                 "no new heartbeat for 12.5 s (last n=20; window 10 s)", id="stopped"),
    pytest.param([(31, [5]), (32, [5]), (33, [5])], 33.0, {}, HeartbeatStatus.FAILED,
                 "heartbeat too slow: 1 of 3 beats in the last 10 s (last n=5)",
                 id="repeated-counter-is-not-rising"),
    pytest.param([(t, [t]) for t in range(0, 40, 6)], 37.0, {}, HeartbeatStatus.FAILED,
                 "heartbeat too slow: 2 of 3 beats", id="too-slow"),
    pytest.param([(1, [57, 58]), (2, [1]), (3, [2]), (4, [3])], 4.0, {},
                 HeartbeatStatus.HEALTHY,
                 "n 1 → 3 (counter restarted 1× : the guest rebooted)", id="reboot-allowed"),
    pytest.param([(1, [57, 58]), (2, [1]), (3, [2]), (4, [3])], 4.0,
                 {"expect_continuation": True}, HeartbeatStatus.FAILED,
                 "heartbeat went back from 58 to 1: the guest restarted instead of "
                 "continuing after the hand-over", id="reboot-after-live-migration"),
    pytest.param([(1, [58]), (2, [59]), (3, [60])], 3.0,
                 {"baseline": 57, "expect_continuation": True}, HeartbeatStatus.HEALTHY,
                 "n 58 → 60", id="continues-after-migration"),
    pytest.param([(1, [3])], 1.0, {"baseline": 57, "expect_continuation": True},
                 HeartbeatStatus.FAILED, "went back from 57 to 3", id="below-baseline"),
    pytest.param([(1, [1, 2, 3, 4, 5])], 1.0, {}, HeartbeatStatus.HEALTHY,
                 "5 beats in the last 10 s, n 1 → 5", id="one-poll-many-beats"),
]  # fmt: skip


@pytest.mark.parametrize(("beats", "now", "kwargs", "status", "reason"), TRACKER_CASES)
def test_virt_heartbeat_tracker_table(
    beats: list[tuple[float, list[int]]],
    now: float,
    kwargs: dict[str, object],
    status: HeartbeatStatus,
    reason: str,
) -> None:
    verdict = run(beats, now, **kwargs).verdict(now)  # type: ignore[arg-type]
    assert verdict.status is status
    assert reason in verdict.reason


def test_virt_heartbeat_tracker_memory_is_bounded() -> None:
    tracker = HeartbeatTracker(0.0, POLICY)
    for t in range(10_000):
        tracker.observe([t + 1], float(t))
    assert len(tracker._run) <= 12
    assert tracker.verdict(9999.0).healthy


def test_virt_heartbeat_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="min_beats >= 1"):
        HeartbeatPolicy(min_beats=0)


# -- the serial log tail ------------------------------------------------------------------


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="ascii") as f:
        f.write(text)


def test_virt_heartbeat_tail_starts_at_the_end_of_an_existing_log(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_text("HEARTBEAT 1\nHEARTBEAT 2\n")
    with SerialLogTail(log) as tail:
        assert tail.read() == (b"", False)
        append(log, "HEARTBEAT 3\n")
        assert tail.read() == (b"HEARTBEAT 3\n", False)


def test_virt_heartbeat_tail_reads_a_new_log_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    with SerialLogTail(log) as tail:
        assert tail.read() == (b"", False)
        log.write_text("LABVM BOOTED\nHEARTBEAT 1\n")
        assert tail.read() == (b"LABVM BOOTED\nHEARTBEAT 1\n", False)


def test_virt_heartbeat_tail_follows_rotation(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_text("")
    with SerialLogTail(log) as tail:
        append(log, "HEARTBEAT 1\n")
        os.rename(log, tmp_path / "serial.log.1")
        append(tmp_path / "serial.log.1", "HEARTBEAT 2\n")  # written before the switch
        log.write_text("HEARTBEAT 3\n")
        assert tail.read() == (b"HEARTBEAT 1\nHEARTBEAT 2\n", False)
        assert tail.read() == (b"", True)
        assert tail.read() == (b"HEARTBEAT 3\n", False)
        assert tail.rotations == 1


def test_virt_heartbeat_tail_follows_truncation(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_text("")
    with SerialLogTail(log) as tail:
        append(log, "HEARTBEAT 1\nHEARTBEAT 2\n")
        tail.read()
        log.write_text("HEART")
        assert tail.read() == (b"HEART", True)
        assert tail.truncations == 1


def test_virt_heartbeat_tail_reads_in_bounded_chunks(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    with SerialLogTail(log, max_read=10) as tail:
        log.write_text("HEARTBEAT 1\n" * 3)
        chunks = [tail.read()[0] for _ in range(5)]
    assert [len(c) for c in chunks] == [10, 10, 10, 6, 0]


# -- the monitor --------------------------------------------------------------------------


class GuestClock(FakeClock):
    """A fake clock whose sleeping lets a fake guest print one beat per second."""

    def __init__(self, log: Path, first: int = 1) -> None:
        super().__init__()
        self.log, self.n, self.carry = log, first, 0.0

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.carry += seconds
        while self.carry >= 1.0:
            self.carry -= 1.0
            append(self.log, f"HEARTBEAT {self.n} uptime={self.n}.00\n")
            self.n += 1


def test_virt_heartbeat_monitor_sees_a_live_guest(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    clock = GuestClock(log)
    with HeartbeatMonitor(log, clock, POLICY) as monitor:
        verdict = monitor.wait_until_rising(timeout=20)
    assert verdict.healthy, verdict.reason
    assert verdict.last_n == 3
    assert clock.monotonic() - 1000.0 == pytest.approx(3.0)


def test_virt_heartbeat_monitor_gives_up_on_a_silent_guest(tmp_path: Path) -> None:
    clock = FakeClock()
    with HeartbeatMonitor(tmp_path / "never.log", clock, POLICY) as monitor:
        verdict = monitor.wait_until_rising(timeout=45)
    assert verdict.status is HeartbeatStatus.FAILED
    assert verdict.reason == "no heartbeat within the 30 s start-up grace"
    assert clock.monotonic() - 1000.0 == pytest.approx(45.0)


def test_virt_heartbeat_monitor_follows_a_migrated_guest(tmp_path: Path) -> None:
    source, dest = tmp_path / "a.log", tmp_path / "b.log"
    clock = GuestClock(source)
    with HeartbeatMonitor(source, clock, POLICY) as monitor:
        assert monitor.wait_until_rising(timeout=10).healthy
        clock.log = dest  # the guest's memory moved: its counter goes on at site B
        monitor.follow(dest, expect_continuation=True)
        verdict = monitor.wait_until_rising(timeout=10)
    assert verdict.healthy, verdict.reason
    assert verdict.last_n is not None and verdict.last_n > 3


def test_virt_heartbeat_monitor_flags_a_reboot_after_migration(tmp_path: Path) -> None:
    source, dest = tmp_path / "a.log", tmp_path / "b.log"
    clock = GuestClock(source)
    with HeartbeatMonitor(source, clock, POLICY) as monitor:
        assert monitor.wait_until_rising(timeout=10).healthy
        clock.log, clock.n = dest, 1  # it booted afresh instead
        monitor.follow(dest, expect_continuation=True)
        before = clock.monotonic()
        verdict = monitor.wait_until_rising(timeout=10)
    assert verdict.status is HeartbeatStatus.FAILED
    assert "went back from 3 to 1" in verdict.reason
    assert clock.monotonic() - before == pytest.approx(1.0)  # failed at once, no waiting


def test_virt_heartbeat_monitor_accepts_a_reboot_after_cold_failover(tmp_path: Path) -> None:
    source, dest = tmp_path / "a.log", tmp_path / "b.log"
    clock = GuestClock(source, first=40)
    with HeartbeatMonitor(source, clock, POLICY) as monitor:
        assert monitor.wait_until_rising(timeout=10).healthy
        clock.log, clock.n = dest, 1
        monitor.follow(dest, expect_continuation=False)
        verdict = monitor.wait_until_rising(timeout=10)
    assert verdict.healthy and verdict.restarts == 1, verdict.reason
