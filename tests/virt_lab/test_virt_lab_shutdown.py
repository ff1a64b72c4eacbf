"""Shutdown in the real lab: graceful first (the guest powers off on the ACPI power
button), destroy when the timeout runs out (a guest without ACPI ignores the request)."""

from __future__ import annotations

import pytest

from drorch.virt.base import VMState
from tests.virt_lab.conftest import GuestFactory, RunningLab

pytestmark = pytest.mark.lab


def test_shutdown_is_graceful_when_the_guest_listens(
    running_lab: RunningLab, guest: GuestFactory
) -> None:
    g = guest()
    result = running_lab.a.shutdown(g.name, timeout=20.0)
    assert result.graceful is True, "the guest powered itself off"
    assert result.seconds < 20.0
    assert running_lab.a.state(g.name) == VMState.SHUTOFF
    assert "LABVM POWER BUTTON: powering off" in g.serial_log.read_text(errors="replace")


def test_shutdown_destroys_a_guest_that_ignores_it(
    running_lab: RunningLab, guest: GuestFactory
) -> None:
    g = guest(acpi=False)
    result = running_lab.a.shutdown(g.name, timeout=2.0)
    assert result.graceful is False
    assert 2.0 <= result.seconds < 10.0
    assert running_lab.a.state(g.name) == VMState.SHUTOFF
    assert "POWER BUTTON" not in g.serial_log.read_text(errors="replace")
