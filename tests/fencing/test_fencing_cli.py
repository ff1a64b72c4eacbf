"""`drorch watchdog test` through the real CLI process: arms the soft watchdog of
lab/sim.yaml, feeds it, and reports the slack; refuses what cannot be tested."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml


def _drorch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drorch", *args], capture_output=True, text=True, timeout=60
    )


def _config(tmp_path: Path, repo_root: Path, **fencing: object) -> Path:
    data = yaml.safe_load((repo_root / "lab" / "sim.yaml").read_text())
    data["fencing"].update(fencing)
    target = tmp_path / "c.yaml"
    target.write_text(yaml.safe_dump(data))
    return target


def test_watchdog_test_soft_reports_slack(tmp_path: Path, repo_root: Path) -> None:
    cfg = _config(tmp_path, repo_root, watchdog_timeout="2s")
    dry = _drorch("watchdog", "test", "-c", str(cfg), "--feeds", "4", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == (
        "would arm the soft watchdog for 2s and feed it 4 times every 0.5s (if this stalls,"
        " it fences this node)"
    )
    unasked = _drorch("watchdog", "test", "-c", str(cfg), "--feeds", "4")
    assert unasked.returncode == 1 and "not confirmed (no terminal to ask on)" in unasked.stderr
    done = _drorch("watchdog", "test", "-c", str(cfg), "--feeds", "4", "--format", "json", "--yes")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["device"] == "soft" and out["feeds"] == 4 and out["late_feeds"] == 0
    # fed every 500 ms against a 2 s timeout: about 1.5 s left at each feed
    assert 1.2 < out["min_slack"] <= 1.6, out


def test_watchdog_test_device_missing_is_an_error(tmp_path: Path, repo_root: Path) -> None:
    cfg = _config(tmp_path, repo_root, watchdog="device", device=str(tmp_path / "nowatchdog"))
    done = _drorch("watchdog", "test", "-c", str(cfg), "--feeds", "1", "--yes")
    assert done.returncode == 1
    assert "drorch: error: cannot open" in done.stderr and "Traceback" not in done.stderr


def test_watchdog_test_none_refused(tmp_path: Path, repo_root: Path) -> None:
    cfg = _config(tmp_path, repo_root, watchdog="none")
    done = _drorch("watchdog", "test", "-c", str(cfg))
    assert done.returncode == 1 and "there is no watchdog to test" in done.stderr


def test_watchdog_test_interval_too_long(tmp_path: Path, repo_root: Path) -> None:
    cfg = _config(tmp_path, repo_root, watchdog_timeout="2s")
    for dry in ((), ("--dry-run",)):  # refused before asking, in the dry run too
        done = _drorch("watchdog", "test", "-c", str(cfg), "--interval", "3s", *dry)
        assert done.returncode == 1 and "would let the 2s watchdog fire" in done.stderr
    bad = _drorch("watchdog", "test", "-c", str(cfg), "--interval", "soon")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
