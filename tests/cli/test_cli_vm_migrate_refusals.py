"""`vm migrate` onto a site where the VM's volume is secondary is refused (exit 3, code
`volume-not-primary`), in the real run and the dry run alike, and nothing moves; once a
dual-primary hand-over is open at the target the same command migrates."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner, Result

from drorch.cli.main import cli

from .conftest import open_handover


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def where_web_runs(config: Path) -> tuple[str, str]:
    rows = json.loads(run("vm", "list", "-c", str(config), "--format", "json").stdout)
    web = next(r for r in rows if r["vm"] == "web")
    return web["A"], web["B"]


def test_migrate_onto_a_secondary_volume_is_refused(lab_config: Path) -> None:
    c = str(lab_config)
    for extra in ((), ("--dry-run",), ("--force", "--accept-data-loss")):
        r = run("vm", "migrate", "web", "--to", "B", "-c", c, "--format", "json", *extra)
        assert r.exit_code == 3, r.output
        out = json.loads(r.stdout)
        assert out["would_migrate"] is False
        [refusal] = out["refused"]
        assert refusal["code"] == "volume-not-primary" and refusal["forceable"] is False
        assert refusal["message"].startswith(
            "volume appdata is secondary at B: web would resume on a disk that is not this"
            " site's to write; open a hand-over first: `drorch migrate --to B`"
        )
        assert "drorch: error: refused: volume-not-primary: volume appdata is secondary" in (
            r.stderr
        )
        assert where_web_runs(lab_config) == ("running", "undefined")


def test_force_needs_the_data_loss_acknowledgement(lab_config: Path) -> None:
    r = run("vm", "migrate", "web", "--to", "B", "-c", str(lab_config), "--force")
    assert r.exit_code == 2 and "--force needs --accept-data-loss" in r.stderr
    assert where_web_runs(lab_config) == ("running", "undefined")


def test_migrates_once_the_hand_over_is_open(lab_config: Path) -> None:
    open_handover(lab_config, "appdata")
    c = str(lab_config)
    dry = run("vm", "migrate", "web", "--to", "B", "-c", c, "--dry-run", "--format", "json")
    assert dry.exit_code == 0 and json.loads(dry.stdout)["would_migrate"] is True
    moved = run("vm", "migrate", "web", "--to", "B", "-c", c, "--format", "json", "--yes")
    assert moved.exit_code == 0, moved.output
    report = json.loads(moved.stdout)
    assert report["running_at"] == "B"
    assert report["simulated"].startswith("yes: driver sim, no guest moved")
    assert re.search(r"done: converged after .* \(simulated\)", moved.stderr)
    assert where_web_runs(lab_config) == ("undefined", "running")


def test_vm_start_refuses_a_volume_that_is_not_primary_there(lab_config: Path) -> None:
    """Like failover-start and migrate: web must not boot from appdata while appdata is
    secondary at that site (the dry run says the same)."""
    from drorch.envbuild import build_environment
    from drorch.model.loader import load_cluster

    c = str(lab_config)
    assert run("vm", "destroy", "web", "--site", "A", "-c", c, "--yes").exit_code == 0
    env = build_environment(load_cluster(lab_config), lab_config.parent)
    try:
        env.replicators[("appdata", "a1")].demote()
    finally:
        env.close()
    for extra in (("--dry-run",), ("--yes",)):
        r = run("vm", "start", "web", "--site", "A", "-c", c, *extra)
        assert r.exit_code == 3, r.output
        assert "refused: volume-not-primary: volume appdata is secondary at A: web would" in (
            r.stderr
        )
    assert where_web_runs(lab_config) == ("shutoff", "undefined")
    env = build_environment(load_cluster(lab_config), lab_config.parent)
    try:
        env.replicators[("appdata", "a1")].promote()
    finally:
        env.close()
    assert run("vm", "start", "web", "--site", "A", "-c", c, "--yes").exit_code == 0
    assert where_web_runs(lab_config) == ("running", "undefined")
