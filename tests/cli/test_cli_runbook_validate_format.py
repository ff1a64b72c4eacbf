"""`runbook validate` is a read command, so it takes --format like every other: json and
yaml print one record per file (ok, name, steps, coded problems with positions)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from drorch.cli.main import cli


def test_validate_as_json_and_yaml(repo_root: Path, tmp_path: Path) -> None:
    good = repo_root / "runbooks" / "site-failover.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps:\n  - {id: a, action: wiat, with: {seconds: 1}}\n")
    args = ["runbook", "validate", str(good), str(bad), "--format"]
    as_json = CliRunner().invoke(cli, [*args, "json"])
    assert as_json.exit_code == 2
    records = json.loads(as_json.stdout)
    assert [(r["file"], r["ok"]) for r in records] == [(str(good), True), (str(bad), False)]
    assert records[0]["name"] == "site-failover" and records[0]["steps"] > 0
    [problem] = records[1]["problems"]
    assert (problem["code"], problem["position"]) == ("unknown-action", f"{bad}:3:21")
    as_yaml = CliRunner().invoke(cli, [*args, "yaml"])
    assert as_yaml.exit_code == 2 and yaml.safe_load(as_yaml.stdout) == records
