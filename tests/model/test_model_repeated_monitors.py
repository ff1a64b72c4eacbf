"""A monitor written out the same for many VMs and services is read once per content
(`Context.by_content`): each copy still gets its own reports, at its own line, and a copy
whose values differ only in type is read on its own."""

from __future__ import annotations

import pytest

from drorch.model.loader import parse_cluster_text
from drorch.model.reports import ConfigError
from drorch.model.types import Monitor, MonitorType
from tests.model.conftest import config_text


def _services(*monitors: str) -> str:
    """One service per monitor text (a flow mapping), each on its own line (line 1 is
    `services:`, service i is on line i + 2)."""
    lines = ["services:"]
    for i, monitor in enumerate(monitors):
        lines.append(f"  - {{name: s{i}, start: 'true', stop: 'true', monitors: [{monitor}]}}")
    return "\n".join(lines) + "\n"


def _reports(services: str) -> list[str]:
    text = config_text(services=services)
    first = text.index("services:")
    before = text[:first].count("\n")  # lines above `services:`
    with pytest.raises(ConfigError) as err:
        parse_cluster_text(text, "c.yaml")
    out = []
    for r in err.value.reports:
        assert r.position is not None
        out.append(f"{r.position.line - before}:{r.position.col}:{r.code}")
    return out


SAME = "{name: m, type: process, target: q, interval: 10s, timeout: 2s}"


def test_repeated_monitors_are_equal_to_one_read_alone() -> None:
    cluster, _ = parse_cluster_text(config_text(services=_services(SAME, SAME, SAME)))
    expected = Monitor("m", MonitorType.PROCESS, "q", 10.0, 2.0)
    assert [s.monitors for s in cluster.services] == [(expected,)] * 3


def test_each_copy_of_a_repeated_monitor_gets_the_rules_reports_at_its_line() -> None:
    bad = "{name: m, type: process, target: q, interval: 2s, timeout: 5s}"
    assert _reports(_services(bad, SAME, bad, bad)) == [
        "2:115:monitor-timeout",
        "4:115:monitor-timeout",
        "5:115:monitor-timeout",
    ]


def test_each_copy_of_a_repeated_bad_monitor_gets_the_schema_reports() -> None:
    bad = "{name: m, type: process, target: q, intervall: 10s}"
    assert _reports(_services(bad, bad)) == ["2:92:unknown-key", "3:92:unknown-key"]


def test_a_copy_that_differs_only_in_type_is_read_on_its_own() -> None:
    whole = "{name: m, type: process, target: q, level: 2}"
    fraction = "{name: m, type: process, target: q, level: 2.0}"  # 2.0 == 2, but not whole
    assert _reports(_services(whole, fraction, whole)) == ["3:99:wrong-type"]


def test_each_monitor_with_a_repeated_bad_target_is_reported() -> None:
    bad = "{name: m, type: tcp, target: localhost}"
    other = "{name: n, type: tcp, target: localhost}"  # another monitor, the same target
    assert _reports(_services(bad, other, bad)) == [
        "2:85:bad-monitor-target",
        "3:85:bad-monitor-target",
        "4:85:bad-monitor-target",
    ]
