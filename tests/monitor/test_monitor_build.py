"""Every configured monitor type maps to one implementation with its level."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.model.types import Monitor as Spec
from drorch.model.types import MonitorType
from drorch.monitor.apphb import AppHeartbeatMonitor
from drorch.monitor.base import CheckResult
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


def test_a_rearmed_heartbeat_monitor_forgets_the_other_sites_beats(tmp_path: Path) -> None:
    """The serial log is shared by both sites: a guest about to start here must not be
    judged by the beats it printed at the other site (they stopped when that site died).
    After `rearm()` it is in a fresh start-up grace; new beats make it healthy."""
    from drorch.monitor.base import CheckStatus
    from drorch.testing.clock import FakeClock

    log = tmp_path / "vm.serial.log"
    log.write_text("")
    clock = FakeClock()
    mon = SerialHeartbeatMonitor("hb", log, clock, interval=2.0)
    for n in range(1, 6):
        with open(log, "a") as f:
            f.write(f"HEARTBEAT {n}\n")
        clock.sleep(1.0)
        mon.check()
    clock.sleep(40.0)  # the other site died long ago
    assert mon.check().status is CheckStatus.FAILED
    mon.rearm()
    assert mon.check().status is CheckStatus.WAITING
    for n in range(1, 5):  # the guest boots here and counts on
        with open(log, "a") as f:
            f.write(f"HEARTBEAT {5 + n}\n")
        clock.sleep(1.0)
    assert mon.check().status is CheckStatus.OK
    mon.close()


def test_a_domain_monitor_asks_the_sites_hypervisor(tmp_path: Path) -> None:
    """`type: domain` (level 1 for a guest): the hypervisor, real or simulated, says
    whether the domain runs here; an unanswering one or none is a failure, not a crash."""
    from drorch.monitor.base import CheckStatus
    from drorch.monitor.domain import DomainMonitor
    from drorch.testing.fake_hypervisor import FakeHypervisor, fake_domain_xml
    from drorch.virt.base import VMState

    hyp = FakeHypervisor("A")
    spec = Spec("web-alive", MonitorType.DOMAIN, "web")
    m = monitor_for(
        spec, runner=LocalRunner(), clock=FakeClock(), base_dir=tmp_path, hypervisor=hyp
    )
    assert isinstance(m, DomainMonitor) and m.level == 1
    assert m.check() == CheckResult(CheckStatus.FAILED, "domain web is undefined")
    hyp.define(fake_domain_xml("web"))
    hyp.start("web")
    assert m.check() == CheckResult(CheckStatus.OK, "domain web is running")
    # paused counts as alive, as in Pacemaker's VirtualDomain (a live migration pauses it)
    hyp.vms["web"].state = VMState.PAUSED
    assert m.check() == CheckResult(CheckStatus.OK, "domain web is paused (QEMU alive)")
    hyp.destroy("web")
    assert m.check() == CheckResult(CheckStatus.FAILED, "domain web is shutoff")
    hyp.unreachable = True
    r = m.check()
    assert r.status is CheckStatus.FAILED and r.reason.startswith("domain web: SiteUnreachable")
    alone = monitor_for(spec, runner=LocalRunner(), clock=FakeClock(), base_dir=tmp_path)
    assert alone.check() == CheckResult(CheckStatus.FAILED, "no hypervisor here to ask for web")
