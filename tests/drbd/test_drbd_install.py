"""Installing a rendered file through a real LocalRunner, validated by the real drbdadm."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from drorch.cli.main import cli
from drorch.remote.local import LocalRunner
from drorch.replication.drbd.install import install_resource
from drorch.replication.drbd.ops import DrbdConfigError
from drorch.replication.drbd.render import render
from tests.drbd.clusters import two_site_cluster

LAB = Path(__file__).resolve().parents[2] / "lab" / "drbd.yaml"


def test_install_writes_checks_and_is_idempotent(tmp_path: Path) -> None:
    cluster = two_site_cluster()
    text = render(cluster, cluster.volumes[0])
    target = tmp_path / "r0.res"
    runner = LocalRunner()
    dry = install_resource(runner, "r0", text, str(target), dry_run=True)
    assert (dry.changed, dry.reason) == (False, f"would create {target} (dry run)")
    assert not target.exists()
    first = install_resource(runner, "r0", text, str(target))
    assert first.changed and target.read_text() == text
    assert "drbdadm accepts it" in first.reason
    again = install_resource(runner, "r0", text, str(target))
    assert (again.changed, again.reason) == (False, f"{target} is already up to date")
    assert not (tmp_path / "r0.res.drorch-new").exists()


def test_install_refuses_a_file_drbdadm_rejects_and_keeps_the_old_one(tmp_path: Path) -> None:
    cluster = two_site_cluster()
    good = render(cluster, cluster.volumes[0])
    target = tmp_path / "r0.res"
    target.write_text(good)
    broken = good.replace("protocol C;", "protocol Q;")
    with pytest.raises(DrbdConfigError, match="drbdadm on the node rejects the file") as err:
        install_resource(LocalRunner(), "r0", broken, str(target))
    assert "protocol" in err.value.message
    assert target.read_text() == good
    assert not (tmp_path / "r0.res.drorch-new").exists()


def test_install_cli_dry_run_and_write(tmp_path: Path) -> None:
    target = tmp_path / "r0.res"
    args = ["drbd", "install", "-c", str(LAB), "r0", "--node", "a1", "--path", str(target)]
    dry = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would create {target}" in dry.stdout and not target.exists()
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert "resource r0 {" in target.read_text()
