"""Each distinct mistake gives its exact code at its exact line (marked `#!` in the case).

The marker comment sits on the line the report must point at; the test finds it, so a
case reads like the file an operator would write."""

from __future__ import annotations

import pytest

from drorch.model.loader import parse_cluster_text
from drorch.model.reports import ConfigError
from tests.model.conftest import config_text

SITES_3 = (
    "sites:\n"
    "  A: {nodes: [{name: a1}]}\n"
    "  B: {nodes: [{name: b1}]}\n"
    "  C: {nodes: [{name: c1}]}  #!\n"
)
CASES: list[tuple[str, str, dict[str, str]]] = [
    ("yaml", "broken indentation", {"extra": "distance_km: 40\n  budget: 1ms  #!\n"}),
    (
        "duplicate-key",
        "key given twice",
        {"head": "cluster: shop\ncluster: again  #!\nprimary_site: A\n"},
    ),
    ("unknown-key", "typo at top level", {"extra": "primary_stie: A  #!\n"}),
    (
        "unknown-key",
        "typo in a node",
        {
            "sites": (
                "sites:\n"
                "  A:\n"
                "    nodes:\n"
                "      - name: a1\n"
                "        adress: local  #!\n"
                "  B:\n"
                "    nodes: [{name: b1}]\n"
            )
        },
    ),
    (
        "missing-key",
        "volume without driver",
        {
            "volumes": (
                "volumes:\n"
                "  - name: data  #!\n"
                "    size: 1GiB\n"
                "    port: 7789\n"
                "    paths: {a1: /x, b1: /x}\n"
            )
        },
    ),
    (
        "wrong-type",
        "vms is a mapping",
        {"vms": "vms:\n  db: {migratable: false}  #!\n", "services": ""},
    ),
    ("bad-duration", "unit typo", {"quorum": "quorum:\n  heartbeat: 1sec  #!\n"}),
    (
        "bad-size",
        "size unit typo",
        {
            "volumes": (
                "volumes:\n"
                "  - name: data\n"
                "    driver: pyrepl\n"
                "    size: 64 megs  #!\n"
                "    port: 7789\n"
                "    paths: {a1: /x, b1: /x}\n"
            )
        },
    ),
    (
        "bad-value",
        "unknown replication mode",
        {
            "volumes": (
                "volumes:\n"
                "  - name: data\n"
                "    driver: pyrepl\n"
                "    mode: synchronous  #!\n"
                "    size: 1GiB\n"
                "    port: 7789\n"
                "    paths: {a1: /x, b1: /x}\n"
            )
        },
    ),
    (
        "out-of-range",
        "port too big",
        {
            "volumes": (
                "volumes:\n"
                "  - name: data\n"
                "    driver: pyrepl\n"
                "    size: 1GiB\n"
                "    port: 77890  #!\n"
                "    paths: {a1: /x, b1: /x}\n"
            )
        },
    ),
    (
        "bad-name",
        "name with a space",
        {
            "drills": (
                "drills:\n"
                "  - name: weekly drill  #!\n"
                "    kind: live\n"
                "    schedule: '@weekly'\n"
                "    target: B\n"
            )
        },
    ),
    (
        "site-count",
        "three sites",
        {"sites": SITES_3.replace("  #!", "").replace("sites:\n", "sites:  #!\n")},
    ),
    (
        "empty-site",
        "site without nodes",
        {
            "sites": ("sites:\n  A:\n    nodes: [{name: a1}]\n  B:  #!\n    nodes: []\n"),
            "volumes": (
                "volumes:\n"
                "  - name: data\n"
                "    driver: pyrepl\n"
                "    size: 1GiB\n"
                "    port: 7789\n"
                "    paths: {a1: /x}\n"
            ),
        },
    ),
    ("unknown-site", "primary site typo", {"head": "cluster: shop\nprimary_site: a  #!\n"}),
    (
        "duplicate-name",
        "node name twice",
        {
            "sites": (
                "sites:\n"
                "  A:\n"
                "    nodes: [{name: a1}]\n"
                "  B:\n"
                "    nodes:\n"
                "      - name: b1\n"
                "      - name: a1  #!\n"
            )
        },
    ),
    (
        "duplicate-name",
        "VM named like a volume",
        {"vms": ("vms:\n  - name: db\n    migratable: false\n  - name: web\n  - name: data  #!\n")},
    ),
    (
        "bad-address",
        "node address without user",
        {
            "sites": (
                "sites:\n"
                "  A:\n"
                "    nodes: [{name: a1}]\n"
                "  B:\n"
                "    nodes:\n"
                "      - name: b1\n"
                "        address: 192.0.2.20:22  #!\n"
            )
        },
    ),
    (
        "bad-address",
        "witness without port",
        {
            "witness": ("witness:\n  address: witness.example.org  #!\n  fingerprint: ")
            + "ab" * 32
            + "\n"
        },
    ),
    (
        "bad-fence-agent",
        "a fence agent that is not a fence_* program",
        {
            "sites": (
                "sites:\n"
                "  A: {nodes: [{name: a1}]}\n"
                "  B:\n"
                "    nodes: [{name: b1}]\n"
                "    fence:\n"
                "      agent: /usr/bin/poweroff  #!\n"
            )
        },
    ),
    (
        "bad-fingerprint",
        "short fingerprint",
        {"witness": ("witness:\n  address: 127.0.0.1:7443\n  fingerprint: 'ab:cd:ef'  #!\n")},
    ),
    (
        "unknown-node",
        "path on an unknown node",
        {
            "volumes": (
                "volumes:\n"
                "  - name: data\n"
                "    driver: pyrepl\n"
                "    size: 1GiB\n"
                "    port: 7789\n"
                "    paths:\n"
                "      a1: /x\n"
                "      b1: /x\n"
                "      c1: /x  #!\n"
            )
        },
    ),
    (
        "volume-site-missing",
        "no replica at B",
        {
            "volumes": (
                "volumes:\n"
                "  - name: data\n"
                "    driver: pyrepl\n"
                "    size: 1GiB\n"
                "    port: 7789\n"
                "    paths: {a1: /x}  #!\n"
            )
        },
    ),
    (
        "port-conflict",
        "two volumes one port",
        {
            "volumes": (
                "volumes:\n"
                "  - name: data\n"
                "    driver: pyrepl\n"
                "    size: 1GiB\n"
                "    port: 7789\n"
                "    paths: {a1: /x, b1: /x}\n"
                "  - name: logs\n"
                "    driver: pyrepl\n"
                "    size: 1GiB\n"
                "    port: 7789  #!\n"
                "    paths: {a1: /y, b1: /y}\n"
            )
        },
    ),
    (
        "options-for-other-driver",
        "drbd options on pyrepl",
        {
            "volumes": (
                "volumes:\n"
                "  - name: data\n"
                "    driver: pyrepl\n"
                "    size: 1GiB\n"
                "    port: 7789\n"
                "    paths: {a1: /x, b1: /x}\n"
                "    drbd: {device: /dev/drbd1}  #!\n"
            )
        },
    ),
    (
        "congestion-needs-async",
        "pull-ahead on sync",
        {
            "volumes": (
                "volumes:\n"
                "  - name: data\n"
                "    driver: drbd\n"
                "    mode: sync\n"
                "    size: 1GiB\n"
                "    port: 7789\n"
                "    paths: {a1: /dev/vg/data, b1: /dev/vg/data}\n"
                "    drbd:\n"
                "      on_congestion: pull-ahead  #!\n"
            )
        },
    ),
    (
        "unknown-reference",
        "VM uses an unknown volume",
        {
            "vms": (
                "vms:\n  - name: db\n    migratable: false\n    volumes: [dta]  #!\n  - name: web\n"
            )
        },
    ),
    (
        "unknown-reference",
        "service depends on an unknown VM",
        {
            "services": (
                "services:\n"
                "  - name: app\n"
                "    start: 'true'\n"
                "    stop: 'true'\n"
                "    depends_on: [dbb]  #!\n"
            )
        },
    ),
    (
        "dependency-cycle",
        "two services wait for each other",
        {
            "services": (
                "services:\n"
                "  - name: app\n"
                "    start: 'true'\n"
                "    stop: 'true'\n"
                "    depends_on: [cache]\n"
                "  - name: cache\n"
                "    start: 'true'\n"
                "    stop: 'true'\n"
                "    depends_on: [app]  #!\n"
            )
        },
    ),
    (
        "migratable-depends-on-fixed",
        "migratable VM needs a pinned one",
        {
            "vms": (
                "vms:\n"
                "  - name: db\n"
                "    migratable: false\n"
                "  - name: web\n"
                "    migratable: true\n"
                "    depends_on: [db]  #!\n"
            )
        },
    ),
    (
        "monitor-timeout",
        "timeout not below interval",
        {
            "services": (
                "services:\n"
                "  - name: app\n"
                "    start: 'true'\n"
                "    stop: 'true'\n"
                "    monitors:\n"
                "      - name: http\n"
                "        type: http\n"
                "        target: http://127.0.0.1/\n"
                "        interval: 5s\n"
                "        timeout: 5s  #!\n"
            )
        },
    ),
    (
        "bad-monitor-target",
        "tcp target without port",
        {
            "services": (
                "services:\n"
                "  - name: app\n"
                "    start: 'true'\n"
                "    stop: 'true'\n"
                "    monitors:\n"
                "      - name: port\n"
                "        type: tcp\n"
                "        target: localhost  #!\n"
            )
        },
    ),
    (
        "placement-node-not-in-site",
        "service placed on the wrong site's node",
        {
            "services": (
                "services:\n"
                "  - name: app\n"
                "    start: 'true'\n"
                "    stop: 'true'\n"
                "    placement:\n"
                "      A: b1  #!\n"
            )
        },
    ),
    (
        "takeover-wait-too-short",
        "takeover before the lease ends",
        {
            "quorum": (
                "quorum:\n  lease_timeout: 10s\n  switch_delay: 5s\n  takeover_wait: 12s  #!\n"
            )
        },
    ),
    (
        "watchdog-exceeds-lease",
        "watchdog slower than the lease",
        {"fencing": ("fencing:\n  watchdog: soft\n  watchdog_timeout: 9500ms  #!\n  margin: 1s\n")},
    ),
    (
        "heartbeat-too-slow",
        "heartbeat longer than the lease",
        {"quorum": "quorum:\n  heartbeat: 10s  #!\n  lease_timeout: 10s\n"},
    ),
    (
        "bad-cron",
        "cron with four fields",
        {
            "drills": (
                "drills:\n"
                "  - name: weekly\n"
                "    kind: live\n"
                "    schedule: '0 3 * *'  #!\n"
                "    target: B\n"
            )
        },
    ),
    (
        "bad-cron",
        "impossible day",
        {
            "drills": (
                "drills:\n"
                "  - name: weekly\n"
                "    kind: cold\n"
                "    schedule: '0 3 31 2 *'  #!\n"
                "    target: B\n"
            )
        },
    ),
    (
        "bad-timezone",
        "drill time zone that does not exist",
        {
            "drills": (
                "drills:\n"
                "  - name: weekly\n"
                "    kind: live\n"
                "    schedule: '@weekly'\n"
                "    tz: Europe/Atlantis  #!\n"
                "    target: B\n"
            )
        },
    ),
    (
        "bad-duration",
        "drill target that is not a duration",
        {
            "drills": (
                "drills:\n"
                "  - name: weekly\n"
                "    kind: live\n"
                "    schedule: '@weekly'\n"
                "    target: B\n"
                "    targets: {rto: soon}  #!\n"
            )
        },
    ),
    (
        "unknown-site",
        "drill targets an unknown site",
        {
            "drills": (
                "drills:\n"
                "  - name: weekly\n"
                "    kind: live\n"
                "    schedule: '@weekly'\n"
                "    target: C  #!\n"
            )
        },
    ),
    (
        "downtime-ceiling-below-start",
        "ceiling below max_downtime",
        {"extra": ("migration:\n  max_downtime: 3s\n  downtime_ceiling: 2s  #!\n")},
    ),
    ("bad-value", "unknown hypervisor driver", {"extra": "hypervisor:\n  driver: vmware  #!\n"}),
]


def _marked_line(text: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if "#!" in line:
            return number
    raise AssertionError("case has no #! marker")


@pytest.mark.parametrize(
    ("code", "overrides"), [(c, o) for c, _, o in CASES], ids=[why for _, why, _ in CASES]
)
def test_bad_config_reports_exact_code_and_line(code: str, overrides: dict[str, str]) -> None:
    text = config_text(**overrides)
    expected_line = _marked_line(text)
    with pytest.raises(ConfigError) as info:
        parse_cluster_text(text, "bad.yaml")
    found = [(r.code, r.position.line if r.position else 0) for r in info.value.errors]
    assert found == [(code, expected_line)], "\n" + str(info.value)


def test_there_are_at_least_25_distinct_mistakes() -> None:
    assert len({why for _, why, _ in CASES}) >= 25
    assert len({code for code, _, _ in CASES}) >= 25


def test_unknown_key_suggests_the_intended_key() -> None:
    text = config_text(quorum="quorum:\n  lease_timout: 10s\n")
    with pytest.raises(ConfigError) as info:
        parse_cluster_text(text, "c.yaml")
    assert info.value.reports[0].message == (
        "unknown key 'lease_timout' in quorum; did you mean 'lease_timeout'?"
    )


def test_message_format_is_file_line_col_code_message() -> None:
    text = config_text(head="cluster: shop\nprimary_site: Q\n")
    with pytest.raises(ConfigError) as info:
        parse_cluster_text(text, "site.yaml")
    assert (
        str(info.value)
        == "site.yaml:2:15: unknown-site: primary_site 'Q' is not a site (sites: A, B)"
    )
