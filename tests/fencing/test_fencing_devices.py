"""The Linux watchdog driver against the fake device; the null watchdog's refusal;
feed bookkeeping."""

from __future__ import annotations

import pytest

from drorch.fencing.feeding import FeedLog
from drorch.fencing.linux import WDIOC_GETTIMEOUT, WDIOC_KEEPALIVE, WDIOC_SETTIMEOUT
from drorch.fencing.watchdog import NullWatchdog, WatchdogError, require_deadline
from drorch.testing.clock import FakeClock
from drorch.testing.fake_watchdog import fake_linux_watchdog


def test_ioctl_numbers_are_the_kernels() -> None:
    # include/uapi/linux/watchdog.h: _IOR('W', 5, int), _IOWR('W', 6, int), _IOR('W', 7, int)
    assert (WDIOC_KEEPALIVE, WDIOC_SETTIMEOUT, WDIOC_GETTIMEOUT) == (
        0x80045705,
        0xC0045706,
        0x80045707,
    )


def test_arm_rounds_down_to_whole_seconds() -> None:
    dev, k = fake_linux_watchdog(FakeClock())
    assert dev.arm(5.9).timeout == 5.0
    assert k.timeout == 5


def test_sub_second_timeout_refused() -> None:
    dev, k = fake_linux_watchdog(FakeClock())
    with pytest.raises(WatchdogError, match="< 1 s"):
        dev.arm(0.5)
    assert not k.is_open


def test_longer_granted_timeout_refused_and_device_stopped() -> None:
    dev, k = fake_linux_watchdog(FakeClock(), grant_extra=3)
    with pytest.raises(WatchdogError, match="granted a 8s timeout for the 5s asked"):
        dev.arm(5)
    assert not k.running, "the refused device was left ticking"


def test_missing_device_is_a_clear_error() -> None:
    dev, _ = fake_linux_watchdog(FakeClock(), missing=True)
    with pytest.raises(WatchdogError, match="cannot open /dev/watchdog: No such file"):
        dev.arm(5)


def test_busy_device_refused() -> None:
    clock = FakeClock()
    dev, k = fake_linux_watchdog(clock)
    dev.arm(5)
    from drorch.fencing.linux import LinuxWatchdog

    second = LinuxWatchdog("/dev/watchdog", ops=k, clock=clock)
    with pytest.raises(WatchdogError, match="busy"):
        second.arm(5)
    dev.disarm()


def test_keepalive_reports_slack_and_magic_close_writes_v() -> None:
    clock = FakeClock()
    dev, k = fake_linux_watchdog(clock)
    dev.arm(10)
    clock.advance(4)
    assert dev.keepalive() == pytest.approx(6)
    assert k.keepalives == 1
    dev.disarm()
    assert not k.running and k.unexpected_closes == 0


def test_crash_close_leaves_timer_running() -> None:
    clock = FakeClock()
    dev, k = fake_linux_watchdog(clock)
    dev.arm(3)
    dev.close()
    assert k.running and k.unexpected_closes == 1
    clock.advance(3.5)
    assert k.fired


def test_null_watchdog_refused_with_automatic_failover() -> None:
    with pytest.raises(
        WatchdogError, match="site A runs primary resources with failover: automatic"
    ):
        require_deadline(NullWatchdog(), site="A", automatic_failover=True)
    require_deadline(NullWatchdog(), site="A", automatic_failover=False)
    dev, _ = fake_linux_watchdog(FakeClock())
    require_deadline(dev, site="A", automatic_failover=True)


@pytest.mark.parametrize(
    ("slack", "late"),
    [(9.0, False), (4.1, False), (3.9, True), (0.5, True)],
)
def test_feed_log_warns_past_three_fifths(slack: float, late: bool) -> None:
    log = FeedLog(timeout=10.0)
    warning = log.record(slack, at=1.0)
    assert (warning is not None) is late
    assert log.late_feeds == int(late)
    if warning:
        assert "late watchdog feed" in warning and "warning past 6.00s" in warning


def test_feed_log_figures() -> None:
    log = FeedLog(timeout=5.0)
    for s in (4.0, 4.5, 3.0):
        log.record(s, at=0.0)
    assert log.as_dict()["min_slack"] == 3.0
    assert log.median_slack() == 4.0
