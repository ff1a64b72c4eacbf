"""Issue 15 in the real lab: each drill kind (`drorch drill run NAME`, runbooks/drills/)
on the whole lab cluster (`lab up --vms 1`: a TCG guest on a sync pyrepl volume, the
witness, one agent per site), typed in site A's namespace as an operator would, and
judged from outside: the guest heartbeats at A again afterwards, no acknowledged counter
value is lost, the history records the run with its RTO and downtime, and the
test-recovery drill leaves production's replicas byte for byte as they were (sha256 of
both backing files before and after, with the guest paused so nothing writes).
A drill is skipped while replication is not in sync, and a test recovery killed with -9
while its copy boots is cleaned up by `drorch drill cleanup RUN_ID` without a trace (no
copy domain, export, view, namespace or work folder). One lab (prefix dd,
10.77.76.0/24), `lab down` at the end, also when a case fails."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drorch.lab.cluster_full import NODES
from drorch.lab.faults import namespace_pids
from drorch.lab.layout import LabLayout
from drorch.lab.stack import REPO
from drorch.replication.pyrepl.control_path import replica_control_path
from tests.virt_lab.conftest import session_lock
from tests.virt_lab.e2e_lab import E2ELab

pytestmark = pytest.mark.lab

LAYOUT = LabLayout(name="pytest-drills", prefix="dd", subnet="10.77.76")
FIGURES: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def e2e() -> Iterator[E2ELab]:
    lab = E2ELab(LAYOUT)
    with session_lock(Path("/tmp") / f"drorch-lab-{LAYOUT.prefix}.lock"):
        try:
            lab.fresh("sync")
            yield lab
        finally:
            lab.lab("down")
            print("real-lab drill figures:", json.dumps(FIGURES, sort_keys=True))
    for ns in ("siteA", "siteB", "witness", "wan"):
        assert namespace_pids(LAYOUT.prefix + ns) == [], ns


def _history(e2e: E2ELab, name: str) -> dict[str, Any]:
    code, out = e2e.drorch("siteA", "drill", "history", "--format", "json", config=False)
    assert code == 0, out
    rows = [r for r in json.loads(out) if r.get("drill") == name]
    assert rows, out
    row: dict[str, Any] = max(rows, key=lambda r: r["started_at"] or 0)
    return row


def _at_a_and_counting(e2e: E2ELab, since: int) -> None:
    sample = e2e.sample(time.monotonic())
    assert sample.running == ("siteA",) and sample.primary == ("siteA",), sample
    e2e.wait_acked(since + 3)
    audit = e2e.counter_audit()
    assert not audit["acked_values_lost"], audit


def _drill(e2e: E2ELab, name: str, timeout: float = 420) -> dict[str, Any]:
    before = e2e.wait_acked(1)
    code, out = e2e.drorch("siteA", "drill", "run", name, "--yes", timeout=timeout)
    assert code == 0, out
    _at_a_and_counting(e2e, before)
    row = _history(e2e, name)
    assert row["result"] == "succeeded", row
    FIGURES[name] = {k: row.get(k) for k in ("rto_s", "rpo_bytes", "max_downtime_s", "downtime_s")}
    return row


def test_weekly_live_drill_over_and_back(e2e: E2ELab) -> None:
    row = _drill(e2e, "weekly-live")
    assert row["rto_s"] is not None and row["rto_s"] > 0, row


def test_quarterly_cold_drill_boots_at_b_and_fails_back(e2e: E2ELab) -> None:
    offset = e2e.serial.stat().st_size
    row = _drill(e2e, "quarterly-cold")
    # a cold drill really booted the guest at B (and again at A on the way back)
    assert e2e.boot_after(offset, timeout=5) is not None, row


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def test_test_recovery_drill_leaves_production_untouched(e2e: E2ELab) -> None:
    disks = [e2e.files.disk("vm1", node) for node in NODES.values()]
    # pause the guest so production writes nothing while the copies are checked
    netns = LAYOUT.site("siteA").netns
    virsh = ["ip", "netns", "exec", netns, "virsh", "-c", LAYOUT.local_uri("siteA")]
    subprocess.run([*virsh, "suspend", "vm1"], check=True, capture_output=True, timeout=30)
    try:
        time.sleep(1.0)  # the last acknowledged write has reached both replicas (sync)
        before = [_sha(d) for d in disks]
        code, out = e2e.drorch(
            "siteA", "drill", "run", "monthly-test-recovery", "--yes", timeout=420
        )
        assert code == 0, out
        after = [_sha(d) for d in disks]
    finally:
        subprocess.run([*virsh, "resume", "vm1"], check=False, capture_output=True, timeout=30)
    assert after == before, "the test-recovery drill changed production's replicas"
    # the copy really booted: its own heartbeat, read from its own serial log
    assert "copies run at siteB, isolated, 1 monitor(s) pass on the copies" in out, out
    row = _history(e2e, "monthly-test-recovery")
    assert row["result"] == "succeeded", row
    FIGURES["monthly-test-recovery"] = {k: row.get(k) for k in ("rto_s", "total_s")}
    code, out = e2e.drorch("siteA", "drill", "status", "--format", "json", config=False)
    assert code == 0, out


def _ctl(e2e: E2ELab, node: str) -> str:
    # pyrepl's state folder beside the cluster file (drorch.replication.pyrepl.driver)
    return str(replica_control_path(e2e.files.cluster.parent, "vm1-disk", node))


def test_a_drill_is_skipped_while_replication_is_not_in_sync(e2e: E2ELab) -> None:
    code, out = e2e.drorch("siteB", "repl", "disconnect", "--control", _ctl(e2e, "b1"),
                           "--yes", config=False)  # fmt: skip
    assert code == 0, out
    try:
        code, out = e2e.drorch("siteA", "drill", "run", "weekly-live", "--yes")
        assert code == 3, out  # refused by a preflight guard, recorded as skipped
        row = _history(e2e, "weekly-live")
        assert row["result"] == "skipped", row
        assert "not-in-sync" in [r["code"] for r in row["reasons"]], row
    finally:
        code, out = e2e.drorch("siteB", "repl", "connect", "--control", _ctl(e2e, "b1"),
                               config=False)  # fmt: skip
        assert code == 0, out
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # bounded: the resync of what A wrote meanwhile
        code, out = e2e.drorch("siteA", "repl", "status", "--control", _ctl(e2e, "a1"),
                               "--format", "json", config=False)  # fmt: skip
        st = json.loads(out) if code == 0 else {}
        if st.get("connection") == "Connected" and st.get("peer_disk") == "UpToDate":
            break
        time.sleep(1.0)
    else:
        raise AssertionError(f"vm1-disk did not resync within 60 s: {out}")
    _at_a_and_counting(e2e, e2e.wait_acked(1))


def test_a_test_recovery_killed_midway_is_cleaned_up_without_a_trace(e2e: E2ELab) -> None:
    netns = LAYOUT.site("siteA").netns
    argv = ["ip", "netns", "exec", netns, sys.executable, "-m", "drorch", "drill", "run",
            "monthly-test-recovery", "--yes", "-c", str(e2e.files.cluster)]  # fmt: skip
    env = {**os.environ, "DRORCH_STATE_DIR": str(e2e.files.drorch_state), "PYTHONPATH": str(REPO)}
    virsh = ["ip", "netns", "exec", LAYOUT.site("siteB").netns, "virsh", "-c",
             LAYOUT.local_uri("siteB")]  # fmt: skip

    def copies() -> list[str]:
        out = subprocess.run([*virsh, "list", "--all", "--name"], capture_output=True,
                             text=True, timeout=30, check=True).stdout  # fmt: skip
        return [n for n in out.split() if n.startswith("drtr-")]

    log = e2e.files.cluster.parent / "killed-drill.log"
    with open(log, "wb") as out_file:
        proc = subprocess.Popen(argv, env=env, stdout=out_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not copies() and time.monotonic() < deadline:  # bounded: until a copy exists
            assert proc.poll() is None, log.read_text(errors="replace")
            time.sleep(0.2)
        assert copies(), "no copy was defined within 120 s"
    finally:
        proc.kill()  # kill -9, by the pid this test started
        proc.wait(timeout=30)
    code, out = e2e.drorch("siteA", "runbook", "history", "--limit", "1", "--format", "json",
                           config=False)  # fmt: skip
    assert code == 0, out
    run_id = json.loads(out)[0]["run_id"]
    code, out = e2e.drorch("siteA", "drill", "cleanup", run_id)
    assert code == 0, out
    assert copies() == [], out
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           timeout=30, check=True).stdout  # fmt: skip
    assert "drtr-" not in names, names
    assert not (e2e.files.drorch_state / "test-recovery" / run_id).exists()
    nbd = subprocess.run(["pgrep", "-a", "qemu-nbd"], capture_output=True, text=True,
                         timeout=30, check=False).stdout  # fmt: skip
    assert "drtr" not in nbd, nbd
    code, out = e2e.drorch("siteB", "repl", "pit-list", "--control", _ctl(e2e, "b1"),
                           "--format", "json", config=False)  # fmt: skip
    assert code == 0 and json.loads(out) in ([], {}), out
    _at_a_and_counting(e2e, e2e.wait_acked(1))
