"""The shipped systemd units pass `systemd-analyze verify` (Debian's systemd package; it
needs no running systemd) with no warning at all, and a broken unit is caught."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def _verify(*units: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze missing: tests/system-packages.txt installs systemd"
    return subprocess.run(
        [tool, "verify", *map(str, units)], capture_output=True, text=True, timeout=60
    )


def test_units_verify_cleanly(repo_root: Path, tmp_path: Path) -> None:
    src = repo_root / "contrib" / "systemd"
    agent = tmp_path / "drorch-agent@a1.service"  # a template verifies as an instance
    agent.write_text((src / "drorch-agent@.service").read_text())
    quorumd = tmp_path / "drorch-quorumd.service"
    quorumd.write_text((src / "drorch-quorumd.service").read_text())
    done = _verify(agent, quorumd)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def test_a_broken_unit_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nExecStat=/bin/true\n")
    done = _verify(bad)
    assert done.returncode != 0 and "Unknown key 'ExecStat'" in done.stderr
