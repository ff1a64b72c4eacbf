"""`vm failover-start` refuses what would corrupt data, in the real run and in the dry
run alike (exit 3), and starts the VM once its volumes are primary at the target."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from drorch.cli.main import cli
from drorch.envbuild import build_environment
from drorch.model.loader import load_cluster


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _codes(result: Result) -> set[str]:
    return {r["code"] for r in json.loads(result.stdout)["refused"]}


def test_refusals_are_the_same_with_and_without_dry_run(lab_config: Path) -> None:
    for extra in ((), ("--dry-run",)):
        r = run(
            "vm",
            "failover-start",
            "db",
            "--to",
            "B",
            "-c",
            str(lab_config),
            "--format",
            "json",
            *extra,
        )
        assert r.exit_code == 3, r.output
        assert _codes(r) == {"vm-running-elsewhere", "volume-not-primary"}
        assert "drorch: error: refused: vm-running-elsewhere" in r.stderr
    # --force does not override what is not forceable
    r = run(
        "vm", "failover-start", "db", "--to", "B", "-c", str(lab_config), "--format", "json",
        "--force", "--accept-data-loss",
    )  # fmt: skip
    assert r.exit_code == 3 and _codes(r) == {"vm-running-elsewhere", "volume-not-primary"}


def test_force_needs_the_data_loss_acknowledgement(lab_config: Path) -> None:
    r = run("vm", "failover-start", "db", "--to", "B", "-c", str(lab_config), "--force")
    assert r.exit_code == 2 and "--force needs --accept-data-loss" in r.stderr


def test_unknown_site_refused_in_dry_run(lab_config: Path) -> None:
    r = run("vm", "failover-start", "db", "--to", "Z", "-c", str(lab_config), "--dry-run")
    assert r.exit_code != 0 and "no site 'Z' (sites: A, B)" in r.stderr


def test_starts_once_stopped_and_promoted(lab_config: Path) -> None:
    assert run("vm", "shutdown", "db", "--site", "A", "-c", str(lab_config), "--yes").exit_code == 0
    r = run("vm", "failover-start", "db", "--to", "B", "-c", str(lab_config), "--format", "json")
    assert r.exit_code == 3 and _codes(r) == {"volume-not-primary"}
    cluster = load_cluster(lab_config)
    env = build_environment(cluster, lab_config.parent)
    try:
        env.replicators[("dbdata", "a1")].demote()
        env.replicators[("dbdata", "b1")].promote(epoch=1)
    finally:
        env.close()
    dry = run(
        "vm",
        "failover-start",
        "db",
        "--to",
        "B",
        "-c",
        str(lab_config),
        "--dry-run",
        "--format",
        "json",
    )
    assert dry.exit_code == 0 and json.loads(dry.stdout)["would_start"] is True
    assert json.loads(run("vm", "list", "-c", str(lab_config), "--format", "json").stdout)
    r = run(
        "vm", "failover-start", "db", "--to", "B", "-c", str(lab_config), "--format", "json",
        "--yes",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["site"] == "B"
