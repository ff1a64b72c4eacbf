"""ClusterVMs: the cross-site checks, on fake hypervisors passed through the Environment."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from drorch.environment import Environment
from drorch.model.types import VM, Hypervisors, MigrationPolicy
from drorch.testing.fake_hypervisor import FakeHypervisor, ScriptedMigration, fake_domain_xml
from drorch.virt.base import MigrationOptions, MigrationProgress, MigrationResult, VMState
from drorch.virt.cluster_vms import ClusterVMs, VMOperationRefused, migration_options

from .conftest import two_site_cluster

CLUSTER = two_site_cluster(
    VM("web", "web-dom"), VM("db", "db-dom", migratable=False), VM("cache", "cache-dom")
)


Sites = tuple[ClusterVMs, FakeHypervisor, FakeHypervisor]


@pytest.fixture
def sites(tmp_path: Path) -> Sites:
    a, b = FakeHypervisor("A"), FakeHypervisor("B")
    for domain in ("web-dom", "db-dom", "stray"):
        a.define(fake_domain_xml(domain))
        a.start(domain)
    env = Environment(hypervisors={"A": a, "B": b}, base_dir=tmp_path)
    return ClusterVMs(CLUSTER, env), a, b


def test_virt_cluster_table_lists_model_and_stray_domains(sites: Sites) -> None:
    vms, _, b = sites
    b.unreachable = True
    rows = {r["domain"]: r for r in vms.table()}
    assert list(rows) == ["web-dom", "db-dom", "cache-dom", "stray"]
    assert rows["web-dom"]["A"] == "running" and rows["web-dom"]["running_at"] == "A"
    assert rows["web-dom"]["B"] == "unreachable: site B is unreachable"
    assert rows["cache-dom"]["A"] == "undefined" and rows["cache-dom"]["running_at"] is None
    assert rows["stray"]["vm"] == "(not in config)"


def test_virt_cluster_unavailable_hypervisor_says_why(tmp_path: Path) -> None:
    env = Environment(hypervisors={"A": FakeHypervisor("A")}, base_dir=tmp_path)
    vms = ClusterVMs(CLUSTER, env, {"B": "ConnectionRefusedError: qemu+tcp://b1 refused"})
    assert vms.states("web-dom")["B"] == (
        "unreachable: site B: ConnectionRefusedError: qemu+tcp://b1 refused"
    )


def test_virt_cluster_migrate_reports_success_and_failure(sites: Sites) -> None:
    vms, a, b = sites
    failed_result = MigrationResult(False, False, 60.0, None, 2000, 40, 10**10, "did not converge")
    a.script_migration(ScriptedMigration(fail="migration did not converge", result=failed_result))
    report = vms.migrate("web", "B", MigrationOptions(), None)
    assert not report.ok and report.as_dict()["running_at"] == "A"
    assert report.as_dict()["iterations"] == 40 and report.reason == "migration did not converge"
    samples: list[MigrationProgress] = []
    report = vms.migrate("web-dom", "B", MigrationOptions(), samples.append)  # by domain name
    assert report.ok and report.as_dict()["running_at"] == "B" and samples
    assert b.state("web-dom") == VMState.RUNNING


@pytest.mark.parametrize(
    ("vm", "to", "message"),
    [
        ("db", "B", "db is not migratable (pinned to its site)"),
        ("cache", "B", "cache (cache-dom) is not running at any site"),
        ("web", "A", "web already runs at site A"),
        ("web", "C", "no site 'C' (sites: A, B)"),
        ("mail", "B", "no VM 'mail' in cluster lab (web, db, cache)"),
    ],
)
def test_virt_cluster_migrate_refusals(sites: Sites, vm: str, to: str, message: str) -> None:
    vms, a, _ = sites
    with pytest.raises(VMOperationRefused, match=message.replace("(", r"\(").replace(")", r"\)")):
        vms.migrate(vm, to, MigrationOptions(), None)
    assert a.migrations == []


def test_virt_cluster_two_running_copies_block_everything(sites: Sites) -> None:
    vms, _, b = sites
    b.define(fake_domain_xml("web-dom"))
    b.start("web-dom")  # a split brain the fakes allow
    with pytest.raises(VMOperationRefused, match="running at A and B at once"):
        vms.migrate("web", "B", MigrationOptions(), None)
    with pytest.raises(VMOperationRefused, match="running at A and B at once"):
        vms.start("web", "A")


def test_virt_cluster_saved_xml_order(sites: Sites, tmp_path: Path) -> None:
    """--xml FILE, else the copy saved for the site, else the other site's definition
    (mapped for this site), else refused."""
    vms, a, _ = sites
    xml, source = vms.saved_xml("db", "B", None)
    assert source == "site A" and "<name>db-dom</name>" in xml and 'name="B"' in xml
    given = tmp_path / "db.xml"
    given.write_text(fake_domain_xml("db-dom", memory_mib=64))
    assert vms.saved_xml("db", "B", given)[1] == str(given)
    saved = vms.sync_xml("db")
    assert [s.site for s in saved] == ["A", "B"] and saved[1].from_site == "A"
    a.unreachable = True  # the saved copy still answers
    xml, source = vms.saved_xml("db", "B", None)
    assert source == f"{saved[1].path} (saved from A)" and 'name="B"' in xml
    Path(saved[1].path).unlink()
    assert vms.saved_xml("db", "B", None)[1] == "the model (simulated)"  # driver sim
    real = ClusterVMs(replace(CLUSTER, hypervisor=Hypervisors(driver="libvirt")), vms.env)
    with pytest.raises(VMOperationRefused, match="no saved XML for db at B: `drorch vm sync-xml"):
        real.saved_xml("db", "B", None)


def test_virt_cluster_migration_saves_the_xml(sites: Sites) -> None:
    vms, _, _ = sites
    assert vms.xml_store.get(VM("web", "web-dom"), "A") is None
    report = vms.migrate("web", "B", MigrationOptions(), None)
    assert report.ok
    record = vms.xml_store.get(VM("web", "web-dom"), "A")
    assert record is not None and record.from_site == "B"  # saved from where it runs now


def test_virt_cluster_failover_start_needs_force_for_a_blind_site(sites: Sites) -> None:
    vms, a, b = sites
    xml = a.export_xml("db-dom")
    with pytest.raises(VMOperationRefused, match="it is running at site A"):
        vms.failover_start("db", "B", xml, force_unreachable=False)
    a.unreachable = True
    with pytest.raises(VMOperationRefused, match="cannot confirm db is stopped at A"):
        vms.failover_start("db", "B", xml, force_unreachable=False)
    assert b.state("db-dom") == VMState.UNDEFINED
    result = vms.failover_start("db", "B", xml, force_unreachable=True)
    assert result.checked_sites == () and b.state("db-dom") == VMState.RUNNING
    saved = vms.xml_store.get(VM("db", "db-dom"), "A")  # for a failback: what runs at B
    assert saved is not None and saved.from_site == "B"


def test_virt_cluster_migration_options_from_policy() -> None:
    policy = MigrationPolicy(max_downtime=0.5, deadline=120.0, allow_postcopy=True)
    options = migration_options(policy, deadline=None, bandwidth_mibps=50, adaptive=False)
    assert (options.max_downtime, options.deadline, options.allow_postcopy) == (0.5, 120.0, True)
    assert options.bandwidth_mibps == 50 and options.adaptive is False
