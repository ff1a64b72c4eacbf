"""Loading good configs: defaults, derivation, warnings, the lab example."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.model.loader import load_cluster, load_cluster_with_warnings, parse_cluster_text
from drorch.model.reports import ConfigError, Severity
from drorch.model.types import Driver, MonitorType, ReplicationMode, WatchdogKind
from tests.model.conftest import config_text


def test_valid_config_loads_with_defaults_and_derived_takeover_wait() -> None:
    cluster, warnings = parse_cluster_text(config_text())
    assert warnings == []
    assert [s.name for s in cluster.sites] == ["A", "B"]
    assert cluster.site("B").nodes[0].address == "root@192.0.2.20:22"
    assert cluster.volumes[0].driver is Driver.PYREPL
    assert cluster.volumes[0].mode is ReplicationMode.SYNC
    assert cluster.volumes[0].size == 64 * 2**20
    assert dict(cluster.volumes[0].paths) == {"a1": "/srv/data.img", "b1": "/srv/data.img"}
    assert cluster.vms[1].domain == "web"  # domain defaults to the VM name
    assert cluster.services[0].monitors[0].type is MonitorType.TCP
    assert cluster.services[0].monitors[0].interval == 10.0
    assert cluster.quorum.takeover_wait == 15.0  # lease_timeout + switch_delay
    assert cluster.fencing.watchdog is WatchdogKind.SOFT
    assert cluster.write_latency_budget == 0.001


def test_lab_example_is_valid_and_warning_free(repo_root: Path) -> None:
    cluster, warnings = load_cluster_with_warnings(repo_root / "lab" / "sim.yaml")
    assert warnings == []
    assert cluster.hypervisor.driver == "sim"
    assert {vm.migratable for vm in cluster.vms} == {True, False}
    assert {d.kind.value for d in cluster.drills} == {"live", "cold", "test-recovery"}
    monitor_types = {m.type for s in cluster.services for m in s.monitors}
    monitor_types |= {m.type for v in cluster.vms for m in v.monitors}
    assert len(monitor_types) >= 4


@pytest.mark.parametrize(
    ("distance", "budget", "warned"),
    [
        ("40", "1ms", False),  # 0.41 ms round trip
        ("97", "1ms", False),  # 0.995 ms: just inside
        ("98", "1ms", True),  # 1.005 ms: just outside
        ("300", "5ms", False),
        ("1200", "5ms", True),
    ],
)
def test_sync_distance_warns_beyond_the_write_latency_budget(
    distance: str, budget: str, warned: bool
) -> None:
    text = config_text(extra=f"distance_km: {distance}\nwrite_latency_budget: {budget}\n")
    _, warnings = parse_cluster_text(text)
    assert [w.code for w in warnings] == (["latency-budget"] if warned else [])
    if warned:
        assert warnings[0].severity is Severity.WARNING
        assert "volume data replicates synchronously" in warnings[0].message


def test_async_volume_is_not_warned_about_distance() -> None:
    vols = config_text(extra="distance_km: 800\n").replace("mode: sync", "mode: async")
    _, warnings = parse_cluster_text(vols)
    assert warnings == []


def test_watchdog_none_is_a_warning_not_an_error() -> None:
    text = config_text(fencing="fencing:\n  watchdog: none\n  watchdog_timeout: 30s\n")
    _, warnings = parse_cluster_text(text)
    assert [w.code for w in warnings] == ["no-watchdog"]


def test_file_errors_carry_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text(config_text(head="cluster: shop\nprimary_site: Z\n"))
    with pytest.raises(ConfigError) as info:
        load_cluster(bad)
    assert str(info.value).startswith(f"{bad}:2:15: unknown-site: primary_site 'Z' is not a site")
    with pytest.raises(ConfigError, match="file: cannot read"):
        load_cluster(tmp_path / "missing.yaml")


def test_all_errors_are_reported_at_once() -> None:
    text = config_text(
        head="cluster: shop\nprimary_site: Z\n",
        quorum="quorum:\n  lease_timeout: 10s\n  takeover_wait: 2s\n  heartbet: 1s\n",
    )
    with pytest.raises(ConfigError) as info:
        parse_cluster_text(text, "c.yaml")
    codes = [r.code for r in info.value.reports]
    assert codes == ["unknown-site", "takeover-wait-too-short", "unknown-key"]
    lines = [r.position.line for r in info.value.reports if r.position]
    assert lines == sorted(lines)


def test_empty_file_names_every_missing_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_cluster_text("", "empty.yaml")
    assert [str(r) for r in info.value.reports] == [
        "empty.yaml:1:1: missing-key: the cluster needs 'cluster'",
        "empty.yaml:1:1: missing-key: the cluster needs 'primary_site'",
        "empty.yaml:1:1: missing-key: the cluster needs 'sites'",
    ]


def test_top_level_list_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_cluster_text("- a\n- b\n", "list.yaml")
    assert [str(r) for r in info.value.reports] == [
        "list.yaml:1:1: wrong-type: the config file must be a mapping, not a list"
    ]


def test_empty_sections_mean_defaults_and_none() -> None:
    text = config_text(vms="vms:\n", services="services:\n", extra="migration:\n")
    cluster, _ = parse_cluster_text(text)
    assert cluster.vms == () and cluster.services == ()
    assert cluster.migration.max_downtime == 0.3


def test_wrong_types_in_fields_are_reported_per_field() -> None:
    text = config_text(
        fencing="fencing:\n  watchdog: soft\n  watchdog_timeout: [5]\n  margin: true\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_cluster_text(text, "c.yaml")
    assert [(r.code, r.message) for r in info.value.reports] == [
        (
            "bad-duration",
            "fencing.watchdog_timeout: expected a duration like 500ms, 10s or 2m, got [5]",
        ),
        ("bad-duration", "fencing.margin: expected a duration like 500ms, 10s or 2m, got True"),
    ]


def test_node_network_options() -> None:
    sites = (
        "sites:\n  A:\n    nodes:\n      - name: a1\n        replication_address: fd00::1\n"
        "        migration_uri: qemu+tcp://10.0.0.1/system\n"
        "  B:\n    nodes:\n      - name: b1\n        replication_address: 10.9.0.2\n"
    )
    cluster, _ = parse_cluster_text(config_text(sites=sites))
    a1 = cluster.site("A").nodes[0]
    assert (a1.replication_address, a1.migration_uri) == ("fd00::1", "qemu+tcp://10.0.0.1/system")
    with pytest.raises(ConfigError) as info:
        parse_cluster_text(config_text(sites=sites.replace("10.9.0.2", "site-b")), "c.yaml")
    assert [(r.code, r.position.line if r.position else 0) for r in info.value.reports] == [
        ("bad-address", 12)  # two header lines, then the tenth line of `sites`
    ]
