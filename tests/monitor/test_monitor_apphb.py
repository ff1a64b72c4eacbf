"""Type 3 application heartbeat over a real unix socket; the clock is fake."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from drorch.monitor.apphb import AppHeartbeat, AppHeartbeatMonitor
from drorch.monitor.base import CheckStatus
from drorch.testing.clock import FakeClock


def _client(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    return s


def test_warn_then_fatal(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "hb.sock"
    m = AppHeartbeatMonitor("app", path, clock, warn_after=2, fatal_after=5)
    try:
        assert m.check().status is CheckStatus.WAITING
        c = _client(path)
        c.sendall(b"HEARTBEAT 1\nHEARTBEAT 2\n")
        assert m.check().reason == "heartbeat 2, 0.0s ago"
        clock.advance(3)
        r = m.check()
        assert r.status is CheckStatus.WARNING and r.passed
        assert r.reason == "heartbeat late: 3.0s since beat 2 (warn after 2s)"
        c.sendall(b"HEARTBEAT 2\n")  # not rising: does not count
        clock.advance(3)
        r = m.check()
        assert r.status is CheckStatus.FAILED
        assert r.reason == "last heartbeat 2 was 6.0s ago (fatal after 5s)"
        c.sendall(b"HEARTBEAT 3\n")
        assert m.check().status is CheckStatus.OK
        c.close()
    finally:
        m.close()
    assert not path.exists()


def test_bad_frame_closes_only_that_connection(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "hb.sock"
    m = AppHeartbeatMonitor("app", path, clock, warn_after=2, fatal_after=5)
    try:
        good, bad = _client(path), _client(path)
        bad.sendall(b"GET / HTTP/1.0\n")
        good.sendall(b"HEARTBEAT 7\n")
        m.check()
        assert m.closed_bad == 1
        assert bad.recv(10) == b""  # closed by the monitor
        clock.advance(1)
        good.sendall(b"HEARTBEAT 8\n")
        assert m.check().reason == "heartbeat 8, 0.0s ago"
        bad.close()
        good.close()
    finally:
        m.close()


def test_never_beats_fails_after_fatal() -> None:
    j = AppHeartbeat(warn_after=1, fatal_after=3, started_at=0.0)
    assert j.verdict(3.0).status is CheckStatus.WAITING
    assert j.verdict(3.5).reason == "no heartbeat in 3.5s"


def test_live_socket_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "hb.sock"
    first = AppHeartbeatMonitor("a", path, FakeClock(), warn_after=1, fatal_after=2)
    try:
        with pytest.raises(OSError, match="in use"):
            AppHeartbeatMonitor("b", path, FakeClock(), warn_after=1, fatal_after=2)
        assert path.is_socket()
    finally:
        first.close()
