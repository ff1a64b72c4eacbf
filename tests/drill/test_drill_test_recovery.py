"""The test-recovery drill on the simulated lab with real qemu-nbd / qemu-img / qemu-io
and a real network namespace: production's replica stays byte for byte untouched (sha256
before and after), the copies write only to their overlays, the isolated network has no
way out, and nothing is left behind: after the drill's own cleanup, and after a kill -9
midway followed by `drorch drill cleanup RUN_ID`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from drorch.cli.main import cli
from drorch.drill.history import History
from drorch.drill.runner import run_drill
from drorch.runbook.gates import YesConfirmer
from drorch.runbook.journal import Journal
from drorch.runbook.setup import RecordingOutput, RunOptions
from drorch.virt.testcopy import copy_domain, netns_name, socket_dir, workdir
from tests.drill.simlab import REPO, SimLab

REPLICAS = ("appdata-b1.img", "dbdata-b1.img")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimLab]:
    monkeypatch.setenv("DRORCH_STATE_DIR", str(tmp_path / "state"))
    lab = SimLab(tmp_path)
    disks = tmp_path / ".drorch-state" / "disks"
    disks.mkdir(parents=True)
    for i, name in enumerate(REPLICAS):  # B's secondary replicas, with content to protect
        with (disks / name).open("wb") as f:
            f.write(hashlib.sha256(str(i).encode()).digest() * 32768)  # 1 MiB pattern
            f.truncate(8 << 20)
    yield lab
    # a failed test must not leave its exports, namespaces or socket dirs behind
    for pid in nbd_pids(str(tmp_path)):  # only ours: their pid files are under tmp_path
        os.kill(pid, signal.SIGKILL)
    if (lab.state / "runbooks.sqlite").exists():
        j = Journal(lab.state)
        run_ids = [r.run_id for r in j.runs()]
        j.close()
        for rid in run_ids:
            if netns_name(rid) in netns():
                subprocess.run(["ip", "netns", "delete", netns_name(rid)], check=False)
            shutil.rmtree(socket_dir(rid), ignore_errors=True)


def replica_sums(lab: SimLab) -> dict[str, str]:
    return {n: sha(lab.config.parent / ".drorch-state" / "disks" / n) for n in REPLICAS}


def netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def nbd_pids(marker: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "qemu-nbd" in cmd and marker in cmd:
                pids.append(int(d.name))
    return pids


def no_trace_left(lab: SimLab, run_id: str) -> None:
    work = workdir(lab.state, run_id)
    assert not work.exists() and not socket_dir(run_id).exists()
    assert netns_name(run_id) not in netns()
    assert nbd_pids(str(work)) == []
    env = lab.env()
    for vm in lab.cluster.vms:
        assert env.hypervisor("B").state(copy_domain(run_id, vm.domain)) == "undefined"
        assert env.hypervisor("A").state(vm.domain) == "running"  # production untouched


def test_test_recovery_succeeds_touches_nothing_and_leaves_no_trace(lab: SimLab) -> None:
    before = replica_sums(lab)
    opts = RunOptions(confirmer=YesConfirmer("t"), output=RecordingOutput(), user="t")
    out = run_drill(lab.cluster, lab.drill("test-recovery"), lab.env(), opts)
    assert out.result == "succeeded", (out.message, out.reasons)
    assert replica_sums(lab) == before
    no_trace_left(lab, out.run_id)
    (row,) = History(lab.state).rows()
    assert row.result == "succeeded" and row.rto_s is not None
    steps = {s["step"]: s for s in row.data["steps"]}  # type: ignore[union-attr]
    # 1 netns + 1 socket dir + 2 x (nbd, overlay) + 2 VMs
    assert steps["cleanup"]["message"] == "removed 8 trace(s)"


def _held_runbooks(tmp: Path) -> Path:
    text = (REPO / "runbooks" / "drills" / "test-recovery.yaml").read_text()
    held = text.replace("  - id: production-still-replicating\n",
                        "  - {id: hold, action: wait, with: {seconds: 120}}\n"
                        "  - id: production-still-replicating\n")  # fmt: skip
    assert held != text
    folder = tmp / "held-runbooks"
    folder.mkdir()
    (folder / "test-recovery.yaml").write_text(held)
    return folder


def _wait_for_hold(state: Path, proc: subprocess.Popen[bytes], log: Path) -> str:
    for _ in range(600):  # bounded: 60 s (a loaded machine starts python slowly)
        assert proc.poll() is None, f"the drill ended before the hold: {log.read_text()}"
        if (state / "runbooks.sqlite").exists():
            j = Journal(state)
            try:
                runs = j.runs()
                if runs and any(e.step == "hold" and e.kind == "start"
                                for e in j.events(runs[0].run_id)):  # fmt: skip
                    return runs[0].run_id
            finally:
                j.close()
        time.sleep(0.1)
    raise AssertionError(f"the drill never reached its hold step: {log.read_text()}")


def _qemu_io(*args: str, netns_: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["qemu-io", *args]
    if netns_:
        argv = ["ip", "netns", "exec", netns_, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_killed_midway_then_cleanup_removes_every_trace(lab: SimLab, tmp_path: Path) -> None:
    before = replica_sums(lab)
    env = {**os.environ, "DRORCH_STATE_DIR": str(lab.state)}
    log = tmp_path / "drill.log"
    out_f = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "drorch", "drill", "run", "monthly-test-recovery", "-c",
         str(lab.config), "--yes", "--runbooks", str(_held_runbooks(tmp_path))],
        env=env, stdout=out_f, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out_f.close()
    try:
        run_id = _wait_for_hold(lab.state, proc, log)
        work, ns = workdir(lab.state, run_id), netns_name(run_id)
        overlay = work / "appdata.qcow2"
        (sock,) = [p for p in socket_dir(run_id).iterdir() if p.suffix == ".sock"][:1]
        # the copy writes: only its overlay changes
        wrote = _qemu_io("-f", "qcow2", "-c", "write -P 0xab 0 1M", str(overlay))
        assert wrote.returncode == 0, wrote.stderr
        # from inside the isolated network the copy still reads its disk (unix socket) ...
        read = _qemu_io("-r", "-f", "qcow2", "-c", "read -P 0xab 0 1M", str(overlay), netns_=ns)
        assert read.returncode == 0 and "read 1048576/1048576" in read.stdout, read
        # ... and its untouched blocks come from the replica, through the export
        tail = _qemu_io("-r", "-f", "qcow2", "-c", "read -P 0 4M 1M", str(overlay))
        assert tail.returncode == 0 and "Pattern verification failed" not in tail.stdout
        # the export itself is read-only, and refuses a writer
        uri = f"nbd+unix:///?socket={sock}"
        info = subprocess.run(["nbdinfo", "--json", uri], capture_output=True, text=True,
                              timeout=30)  # fmt: skip
        assert json.loads(info.stdout)["exports"][0]["is_read_only"] is True, info
        direct = _qemu_io("-f", "raw", "-c", "write 0 512", uri)
        assert direct.returncode != 0 and "permission denied" in direct.stderr.lower()
        # no way out of the isolated network: a listener in the host namespace is not there
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port = listener.getsockname()[1]
            probe = subprocess.run(
                ["ip", "netns", "exec", ns, sys.executable, "-c",
                 f"import socket; socket.create_connection(('127.0.0.1', {port}), 2)"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
        assert probe.returncode != 0 and "ConnectionRefusedError" in probe.stderr
        assert nbd_pids(str(work)), "the exports run while the drill holds"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert replica_sums(lab) == before
    assert workdir(lab.state, run_id).exists() and nbd_pids(str(work))  # left behind
    shown = CliRunner().invoke(cli, ["drill", "history", "--format", "json"])
    assert json.loads(shown.output)[0]["result"] == "interrupted"
    out = CliRunner().invoke(cli, ["drill", "cleanup", run_id])
    assert out.exit_code == 0, out.output
    assert f"run {run_id}: removed 8 trace(s); the run is abandoned" in out.output
    no_trace_left(lab, run_id)
    assert replica_sums(lab) == before
    (row,) = History(lab.state).rows()
    assert (row.result, row.run_id, row.reasons[0].code) == ("cleaned", run_id, "interrupted")
    again = CliRunner().invoke(cli, ["drill", "cleanup", run_id])
    assert again.exit_code == 0 and "nothing was left" in again.output
