"""Trends (median, regression, targets) and the reports (Markdown, JSON, HTML)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from drorch.cli.main import cli
from drorch.drill.history import History, Reason
from drorch.drill.trend import trend
from drorch.model.types import DrillTargets
from tests.drill.rows import add_run


@pytest.fixture
def history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> History:
    monkeypatch.setenv("DRORCH_STATE_DIR", str(tmp_path))
    return History(tmp_path)


def test_a_slower_run_is_flagged_as_a_regression_against_the_median(history: History) -> None:
    for i, rto in enumerate([20.0, 22.0, 21.0, 45.0]):
        add_run(history, 1000.0 * i, rto, 0.2)
    t = trend(history.rows())
    assert t is not None
    assert (t.last_rto_s, t.median_rto_s, t.flags) == (45.0, 21.0, ["regression"])
    assert t.rtos == [20.0, 22.0, 21.0, 45.0]
    # 30 s is less than 50% worse than the median: no flag
    rows = history.rows()
    rows[-1].rto_s = 30.0
    assert trend(rows).flags == []  # type: ignore[union-attr]


def test_targets_and_failures_are_flagged(history: History) -> None:
    add_run(history, 0.0, 20.0, 0.9)  # downtime 0.9 s > 0.5 s target
    t = trend(history.rows())
    assert t is not None and t.flags == ["over-target"]
    assert trend(history.rows(), DrillTargets(rto=10.0)).flags == ["over-target"]  # type: ignore[union-attr]
    assert trend(history.rows(), DrillTargets(rto=60.0)).flags == []  # type: ignore[union-attr]
    history.skip("hq-dr", "weekly-live", "live", "B", 50.0, "skipped",
                 [Reason("not-in-sync", "appdata")])  # fmt: skip
    assert "failing" in trend(history.rows()).flags  # type: ignore[union-attr]


def test_trend_command_table_and_json(history: History) -> None:
    for i, rto in enumerate([20.0, 22.0, 21.0, 45.0]):
        add_run(history, 1000.0 * i, rto, 0.2)
    out = CliRunner().invoke(cli, ["drill", "trend", "--format", "json"])
    assert out.exit_code == 0, out.output
    (data,) = json.loads(out.output)
    assert data["flags"] == ["regression"] and data["median_rto_s"] == 21.0
    table = CliRunner().invoke(cli, ["drill", "trend"])
    assert "regression" in table.output and "LAST_RTO_S" in table.output


def test_html_report_is_self_contained_escaped_and_has_the_charts(
    history: History, tmp_path: Path
) -> None:
    for i, rto in enumerate([20.0, 22.0, 21.0]):
        add_run(history, 1000.0 * i, rto, 0.2)
    add_run(history, 5000.0, 400.0, 0.2, result="succeeded",
            reasons=[Reason("x<script>alert(1)</script>", "a & b")])  # fmt: skip
    target = tmp_path / "report.html"
    out = CliRunner().invoke(cli, ["drill", "report", "run-5000", "--format", "html",
                                   "-o", str(target)])  # fmt: skip
    assert out.exit_code == 0, out.output
    page = target.read_text()
    assert "<script" not in page and "&lt;script&gt;" in page and "a &amp; b" in page
    assert "&lt;b&gt;every&lt;/b&gt;" in page  # a step message, escaped in its tooltip
    # nothing is loaded: no src/href attributes, no url(), no link/import
    assert not re.search(r"\s(src|href)\s*=|url\(|<link|@import", page)
    assert len(re.findall(r'<rect class="bar"', page)) == 4  # one Gantt bar per step
    assert '<svg id="progress"' in page and '<svg id="trend"' in page
    assert page.count("<circle") == 4  # four RTO points in the trend
    assert 'class="fail">fail' in page  # RTO 400 s > the 300 s target
    assert "over-target" in page


def test_markdown_and_json_reports(history: History) -> None:
    add_run(history, 0.0, 20.0, 0.2)
    md = CliRunner().invoke(cli, ["drill", "report", "run-0"])
    assert md.exit_code == 0
    assert "| RTO | 300.0 s | 20.0 s | pass |" in md.output
    assert "| at-target | check.monitors | main | ok | 20.5 s | 1.5 s |" in md.output
    data = json.loads(CliRunner().invoke(cli, ["drill", "report", "1", "--format", "json"]).output)
    assert data["drill"]["rto_s"] == 20.0 and data["verdicts"][0]["verdict"] == "pass"
    missing = CliRunner().invoke(cli, ["drill", "report", "nope"])
    assert missing.exit_code == 2 and "no drill 'nope'" in missing.output
