"""`drorch --version` and `drorch config validate|show` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from drorch import __version__
from drorch.cli.main import cli
from drorch.model.loader import load_cluster, parse_cluster_text


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"drorch, version {__version__}"


def test_validate_ok(lab_config: Path) -> None:
    result = run("config", "validate", "-c", str(lab_config))
    assert (result.exit_code, result.stdout, result.stderr) == (0, "ok\n", "")


def test_validate_prints_every_error_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "cluster: x\n"
        "primary_site: A\n"
        "sites:\n"
        "  A: {nodes: [{name: a1}]}\n"
        "  B: {nodes: [{name: b1}]}\n"
        "quorum:\n"
        "  lease_timeout: 10s\n"
        "  takeover_wait: 5s\n"
        "  hearbeat: 1s\n"
    )
    result = run("config", "validate", "-c", str(bad))
    assert result.exit_code == 2
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        f"{bad}:8:18: takeover-wait-too-short: takeover_wait 5s is shorter than"
        " lease_timeout 10s + switch_delay 5s = 15s: the survivor could take over before the"
        " lost site has fenced itself (leave takeover_wait out to derive it)",
        f"{bad}:9:3: unknown-key: unknown key 'hearbeat' in quorum; did you mean 'heartbeat'?",
    ]


def test_validate_json_lists_errors_with_positions(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: x\nprimary_site: A\nsites: []\n")
    result = run("config", "validate", "-c", str(bad), "--format", "json")
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert data["errors"] == [
        {"file": str(bad), "line": 3, "col": 8, "code": "wrong-type", "severity": "error",
         "message": "sites must be a mapping of site name to its nodes, e.g. `A: {nodes: [...]}`"},
    ]  # fmt: skip


def test_validate_warnings_and_strict(lab_config: Path) -> None:
    text = lab_config.read_text().replace("distance_km: 40", "distance_km: 400")
    lab_config.write_text(text)
    result = run("config", "validate", "-c", str(lab_config))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[-1] == "ok (2 warning(s))"
    assert [ln.split(": ")[1:3] for ln in lines[:-1]] == [["warning", "latency-budget"]] * 2
    strict = run("config", "validate", "--strict", "-c", str(lab_config))
    assert strict.exit_code == 1
    assert strict.stdout.splitlines()[-1] == (
        "not ok: 2 warning(s), and --strict makes warnings fail"
    )
    as_json = run("config", "validate", "--strict", "-c", str(lab_config), "--format", "json")
    assert as_json.exit_code == 1 and '"ok": false' in as_json.stdout


def test_validate_missing_file_exits_2(tmp_path: Path) -> None:
    result = run("config", "validate", "-c", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "nope.yaml:1:1: file: cannot read" in result.stdout


def test_show_yaml_loads_back_to_the_same_cluster(lab_config: Path) -> None:
    result = run("config", "show", "-c", str(lab_config), "--format", "yaml")
    assert result.exit_code == 0
    reloaded, _ = parse_cluster_text(result.stdout, "shown.yaml")
    assert reloaded == load_cluster(lab_config)


def test_show_json_is_the_normalised_model(lab_config: Path) -> None:
    result = run("config", "show", "-c", str(lab_config), "--format", "json")
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["quorum"] == {
        "heartbeat": "1s", "lease_timeout": "10s", "switch_delay": "5s", "takeover_wait": "15s",
    }  # fmt: skip
    assert data["volumes"][0]["size"] == "64MiB"
    assert (
        yaml.safe_load(run("config", "show", "-c", str(lab_config), "--format", "yaml").stdout)
        == data
    )


def test_show_table_has_the_sections(lab_config: Path) -> None:
    result = run("config", "show", "-c", str(lab_config))
    assert result.exit_code == 0
    for heading in ("nodes:", "volumes:", "vms:", "services:", "drills:"):
        assert heading in result.stdout
    assert "takeover_wait 15s" in result.stdout


def test_show_refuses_a_broken_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: x\n  primary_site: A\n")
    result = run("config", "show", "-c", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:2:15: yaml: mapping values are not allowed" in result.stderr
