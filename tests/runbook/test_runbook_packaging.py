"""The shipped runbooks are found when drorch is installed from its wheel, not only from
a source checkout: the wheel carries `runbooks/` as `drorch/runbooks/` (setup.py), and
every lookup goes through drorch.shipped_runbooks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from drorch.agent.jobs import find_runbook
from drorch.shipped_runbooks import shipped_runbooks_dir

SOURCES = ("drorch", "runbooks", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")


def test_a_checkout_finds_its_own_runbooks(repo_root: Path, tmp_path: Path) -> None:
    assert shipped_runbooks_dir() == repo_root / "runbooks"
    found = find_runbook("runbooks/site-failover.yaml", tmp_path)
    assert found == repo_root / "runbooks" / "site-failover.yaml"


@pytest.mark.slow
def test_the_wheel_ships_the_runbooks_and_an_install_finds_them(
    repo_root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:  # a clean copy: the build must not litter the checkout
        from_, to = repo_root / name, src / name
        if from_.is_dir():
            shutil.copytree(from_, to, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(from_, to)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    [wheel] = (tmp_path / "dist").glob("drorch-*.whl")
    shipped = sorted(
        f"drorch/{p.relative_to(repo_root).as_posix()}"
        for p in (repo_root / "runbooks").rglob("*.yaml")
    )
    assert len(shipped) >= 6
    in_wheel = sorted(
        n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("drorch/runbooks/")
    )
    assert in_wheel == shipped

    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, timeout=300, capture_output=True)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"  # no runbooks/ here, no checkout above
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "DRORCH_RUNBOOKS"}
    env["PYTHONPATH"] = str(site)
    probe = (
        "import drorch, json\n"
        "from drorch.shipped_runbooks import shipped_runbooks_dir\n"
        "from drorch.drill.runner import drill_runbook_dir\n"
        "from drorch.agent.jobs import find_runbook\n"
        "from pathlib import Path\n"
        "print(json.dumps([drorch.__file__, str(shipped_runbooks_dir()),"
        " str(drill_runbook_dir()), str(find_runbook('runbooks/site-failover.yaml', Path.cwd()))]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout  # fmt: skip
    module, folder, drills, takeover = json.loads(out)
    assert Path(module).is_relative_to(site), "the installed copy, not the checkout"
    assert folder == str(site / "drorch" / "runbooks")
    assert drills == str(site / "drorch" / "runbooks" / "drills")
    assert takeover == str(site / "drorch" / "runbooks" / "site-failover.yaml")
    listed = subprocess.run(
        [sys.executable, "-m", "drorch", "runbook", "list", "--format", "json"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    names = {row["name"] for row in json.loads(listed.stdout)}
    assert {"site-failover", "hurricane-planned-migration", "failback"} <= names
