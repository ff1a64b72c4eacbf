"""Every configured monitor type maps to one implementation with its level."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.model.types import Monitor as Spec
from drorch.model.types import MonitorType
from drorch.monitor.apphb import AppHeartbeatMonitor
from drorch.monitor.build import SerialHeartbeatMonitor, monitor_for
from drorch.monitor.probes import CommandMonitor, HttpMonitor, TcpMonitor
from drorch.monitor.process import ProcessMonitor
from drorch.remote.local import LocalRunner
from drorch.testing.clock import FakeClock


@pytest.mark.parametrize(
    ("mtype", "target", "cls", "level"),
    [
        (MonitorType.PROCESS, "pidfile:/run/x.pid", ProcessMonitor, 1),
        (MonitorType.TCP, "127.0.0.1:5432", TcpMonitor, 2),
        (MonitorType.HTTP, "http://127.0.0.1:8080/health", HttpMonitor, 2),
        (MonitorType.COMMAND, "pg_isready", CommandMonitor, 2),
        (MonitorType.HEARTBEAT, "guest.log", SerialHeartbeatMonitor, 3),
        (MonitorType.HEARTBEAT, "unix:app.sock", AppHeartbeatMonitor, 3),
    ],
)
def test_monitor_for(
    tmp_path: Path, mtype: MonitorType, target: str, cls: type, level: int
) -> None:
    spec = Spec("m", mtype, target, level=2 if level == 2 else 1)
    m = monitor_for(spec, runner=LocalRunner(), clock=FakeClock(), base_dir=tmp_path)
    try:
        assert isinstance(m, cls) and m.level == level
    finally:
        m.close()


def test_app_heartbeat_deadlines_follow_interval(tmp_path: Path) -> None:
    spec = Spec("m", MonitorType.HEARTBEAT, "unix:a.sock", interval=4, timeout=1)
    m = monitor_for(spec, runner=LocalRunner(), clock=FakeClock(), base_dir=tmp_path)
    try:
        assert isinstance(m, AppHeartbeatMonitor)
        assert (m.judge.warn_after, m.judge.fatal_after) == (4, 8)
    finally:
        m.close()
