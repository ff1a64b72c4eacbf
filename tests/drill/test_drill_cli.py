"""`drorch drill schedule|history` and `drorch scheduler run` through click."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from drorch.cli.main import cli
from tests.drill.conftest import cluster_yaml


@pytest.fixture
def configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    monkeypatch.setenv("DRORCH_STATE_DIR", str(tmp_path / "state"))
    out = []
    for name, sites in (("red", ("A", "B")), ("blue", ("C", "D"))):
        p = tmp_path / f"{name}.yaml"
        p.write_text(cluster_yaml(name, sites))
        out.append(p)
    return out


def test_schedule_lists_every_cluster_in_every_format(configs: list[Path]) -> None:
    args = ["drill", "schedule", "-c", str(configs[0]), "-c", str(configs[1]), "--count", "2"]
    table = CliRunner().invoke(cli, args)
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0].split()[:3] == ["START_AT", "CLUSTER", "DRILL"]
    rows = json.loads(CliRunner().invoke(cli, [*args, "--format", "json"]).output)
    assert sorted({r["cluster"] for r in rows}) == ["blue", "red"] and len(rows) == 4
    assert all(r["start_at"].endswith("T03:00:00+00:00") for r in rows)
    assert yaml.safe_load(CliRunner().invoke(cli, [*args, "--format", "yaml"]).output) == rows


def test_bad_schedule_is_a_positioned_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(cluster_yaml("bad", drills=(
        "  - {name: w, kind: live, schedule: '0 3 * * sun', target: B}\n"
        "  - name: x\n    kind: live\n    schedule: '61 3 * * *'\n    target: B\n"
        "    tz: Mars/Olympus\n"
    )))  # fmt: skip
    result = CliRunner().invoke(cli, ["drill", "schedule", "-c", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:11:15: bad-cron: drill 'x': '61 3 * * *': Bad minute" in result.output
    assert f"{bad}:13:9: bad-timezone: drill 'x': unknown time zone 'Mars/Olympus'" in (
        result.output
    )
    assert "Traceback" not in result.output


def test_two_configs_of_one_cluster_are_refused(configs: list[Path], tmp_path: Path) -> None:
    twin = tmp_path / "twin.yaml"
    twin.write_text(configs[0].read_text())
    result = CliRunner().invoke(cli, ["drill", "schedule", "-c", str(configs[0]), "-c", str(twin)])
    assert result.exit_code == 2 and "both describe cluster 'red'" in result.output


def test_scheduler_one_pass_and_empty_history(configs: list[Path]) -> None:
    result = CliRunner().invoke(
        cli, ["scheduler", "run", "-c", str(configs[0]), "-c", str(configs[1]), "--max-ticks", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "scheduler: 2 drill(s) of 2 cluster(s)" in result.output
    assert "seen red/weekly: first seen" in result.output
    hist = CliRunner().invoke(cli, ["drill", "history", "--format", "json"])
    assert hist.exit_code == 0 and json.loads(hist.output) == []
