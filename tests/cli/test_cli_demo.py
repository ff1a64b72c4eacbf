"""`make demo`'s script keeps working: no root, loopback only, the hurricane runbook carried
out for real over real pyrepl daemons and a real quorum daemon, everything stopped after."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def test_demo_runs_the_hurricane_runbook_there_and_back(repo_root: Path) -> None:
    # a short scratch folder: the daemons' unix control sockets live under it, and a
    # socket path may not exceed 107 bytes (pytest's tmp_path can)
    tmp_path = Path(tempfile.mkdtemp(prefix="dd", dir="/tmp"))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["TMPDIR"] = str(tmp_path)
    env.pop("DRORCH_STATE_DIR", None)
    proc = subprocess.run(
        ["bash", str(repo_root / "lab" / "demo-sim.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "\nok\n" in out  # the config validates
    assert re.search(r"appdata\s+a1\s+A\s+started, day-0 primary\s+primary\s+UpToDate\s+Connected",
                     out), out  # fmt: skip
    # the honest first look: nobody holds the witness's lease before the runbook takes it
    assert "quorum-unheld" in out
    assert "replication is real" in out
    assert "planned migration A -> B: 21 steps, runnable" in out
    assert "dry run: nothing is changed" in out
    # carried out twice (to B, then the drill's way back to A), each with a report
    assert len(re.findall(r"run \S+ succeeded: every step done", out)) == 2
    assert "changed: migrated web A -> B" in out and "changed: migrated web B -> A" in out
    assert len(re.findall(r"RTO\s+\d+\.\d+s \(run start -> ", out)) == 2
    assert len(re.findall(r"RPO\s+0 bytes", out)) == 2
    assert len(re.findall(r"downtime web\s+0\.\d+s", out)) == 2
    assert "quorum released by A, now held by B" in out
    assert re.search(r"appdata\s+b1\s+pyrepl\s+primary\s+UpToDate\s+Connected", out), out
    assert "blocked: A is still reachable and not fenced" in out
    assert "unknown key 'heartbeet' in quorum; did you mean 'heartbeat'?" in out
    assert list(tmp_path.iterdir()) == []  # the scratch state was removed
    tmp_path.rmdir()
    # every daemon it started is gone (a stopped daemon may take a moment to exit)
    for _ in range(100):
        if not _processes_mentioning(str(tmp_path)):
            break
        time.sleep(0.1)
    assert _processes_mentioning(str(tmp_path)) == []
    assert "\x1b" not in out + proc.stderr, "ANSI escapes when stdout is not a terminal"
