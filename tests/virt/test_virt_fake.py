"""The fake hypervisor's own scripting features (its contract runs in test_virt_contract)."""

from __future__ import annotations

import pytest

from drorch.testing.clock import FakeClock
from drorch.testing.fake_hypervisor import (
    FakeHypervisor,
    ScriptedMigration,
    SiteUnreachable,
    fake_domain_xml,
)
from drorch.virt.base import (
    ColdStartResult,
    MigrationFailed,
    MigrationOptions,
    MigrationProgress,
    VMState,
)


def running(site: str = "A", **kwargs: object) -> FakeHypervisor:
    hv = FakeHypervisor(site, **kwargs)  # type: ignore[arg-type]
    hv.define(fake_domain_xml("web"))
    hv.start("web")
    return hv


def sample(remaining: int) -> MigrationProgress:
    return MigrationProgress(1.0, 10, remaining, 100, 5, 2, 30, 300)


def test_virt_fake_scripted_outcomes_in_order() -> None:
    a, b = running(), FakeHypervisor("B")
    a.script_migration(
        ScriptedMigration(progress=[sample(90), sample(40)], fail="link lost at 60 %"),
        ScriptedMigration(progress=[sample(0)]),
    )
    seen: list[MigrationProgress] = []
    with pytest.raises(MigrationFailed, match="link lost at 60 %"):
        a.migrate_live("web", b, MigrationOptions(deadline=30), seen.append)
    assert [s.data_remaining for s in seen] == [90, 40]
    assert a.state("web") == VMState.RUNNING and b.state("web") == VMState.UNDEFINED
    a.migrate_live("web", b, MigrationOptions(), seen.append)
    assert seen[-1].data_remaining == 0
    assert [(m.vm, m.dest, m.options.deadline) for m in a.migrations] == [
        ("web", "B", 30),
        ("web", "B", 600),
    ]
    assert b.state("web") == VMState.RUNNING


def test_virt_fake_unreachable_site() -> None:
    a, b = running(), FakeHypervisor("B")
    b.unreachable = True
    with pytest.raises(MigrationFailed, match="cannot reach site B"):
        a.migrate_live("web", b, MigrationOptions())
    with pytest.raises(SiteUnreachable):
        b.list()
    a.unreachable = True
    result = b_site_cold_start(a)
    assert result.unreachable_sites == ("A",)
    assert "could not check A (unreachable)" in result.reason


def b_site_cold_start(lost: FakeHypervisor) -> ColdStartResult:
    dest = FakeHypervisor("B")
    result = dest.cold_start(fake_domain_xml("web"), [lost])
    assert dest.state("web") == VMState.RUNNING
    return result


def test_virt_fake_shutdown_uses_the_clock() -> None:
    clock = FakeClock()
    a = running(clock=clock, shutdown_seconds=4.0)
    result = a.shutdown("web", timeout=2.0)
    assert not result.graceful and result.seconds == 2.0
    assert clock.sleeps == [2.0]
