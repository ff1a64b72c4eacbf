"""`make demo`'s script keeps working: no root, no network, a sensible plan."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_script_validates_shows_status_and_plans(repo_root: Path, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.run(
        ["bash", str(repo_root / "lab" / "demo.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "\nok\n" in out
    assert "active_site: A" in out
    assert "planned migration A -> B: 21 steps, runnable" in out
    assert "web is migratable: live-migrate it to B" in out
    # the live hand-over really ran on the simulated sites: web now runs at B
    assert "result                 migrated" in out
    assert "running_at             B" in out
    assert "blocked: A is still reachable and not fenced" in out
    assert "unknown key 'heartbeet' in quorum; did you mean 'heartbeat'?" in out
    assert list(tmp_path.iterdir()) == []  # the scratch state was removed
    assert "\x1b" not in out + proc.stderr, "ANSI escapes when stdout is not a terminal"
