"""`drorch quorumd` as a real subprocess: state files, exit codes, SIGTERM, restarts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from drorch.quorum.state import read_state
from tests.quorum.conftest import (
    LEASE_MS,
    SWITCH_DELAY_MS,
    DaemonProcess,
    Pki,
    config_text,
    free_port,
)

GRACE = (LEASE_MS + SWITCH_DELAY_MS) / 1000


def start(
    pki: Pki, tmp_path: Path, daemons: list[DaemonProcess], init: bool, port: int = 0
) -> DaemonProcess:
    port = port or free_port()
    path = tmp_path / "quorumd.yaml"
    path.write_text(config_text(pki, port))
    d = DaemonProcess(pki, port, path, init=init)
    daemons.append(d)
    d.wait_listening()
    return d


def test_missing_state_without_init_is_refused(
    pki: Pki, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    path = tmp_path / "quorumd.yaml"
    path.write_text(config_text(pki, free_port()))
    d = DaemonProcess(pki, 0, path, init=False)
    daemons.append(d)
    assert d.wait() == 1
    assert "state file does not exist" in d.stderr()
    assert "--init" in d.stderr()
    assert not (tmp_path / "quorumd.state").exists()


def test_unreadable_state_is_refused(
    pki: Pki, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    path = tmp_path / "quorumd.yaml"
    path.write_text(config_text(pki, free_port()))
    (tmp_path / "quorumd.state").write_text('{"format": 1, "clusters": "x"')
    d = DaemonProcess(pki, 0, path, init=False)
    daemons.append(d)
    assert d.wait() == 1
    assert "not valid JSON" in d.stderr()


def test_init_refuses_an_existing_state(
    pki: Pki, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    path = tmp_path / "quorumd.yaml"
    path.write_text(config_text(pki, free_port()))
    state = tmp_path / "quorumd.state"
    state.write_text(
        '{"format":1,"max_lease_ms":1,"max_switch_delay_ms":1,"clusters":{"c1":{"epoch":9,"holder":"A"}}}'
    )
    before = state.read_bytes()
    d = DaemonProcess(pki, 0, path, init=True)
    daemons.append(d)
    assert d.wait() == 1
    assert "already exists" in d.stderr()
    assert state.read_bytes() == before


def test_sigterm_persists_and_exits_0_and_restart_gives_no_double_grant(
    pki: Pki, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    d = start(pki, tmp_path, daemons, init=True)
    with d.connect("c1", "A") as a:
        v = a.heartbeat(1, True, 2)
        assert (v.granted, v.epoch) == (True, 1)
    with d.connect("c2", "B") as b:  # a cluster that will lose its holder during grace
        assert b.heartbeat(1, True, 1).granted
    assert d.terminate() == 0
    assert "stopped; state persisted" in d.stderr()
    state = read_state(d.state_file)
    assert (state.clusters["c1"].epoch, state.clusters["c1"].holder) == (1, "A")
    assert (state.max_lease_ms, state.max_switch_delay_ms) == (LEASE_MS, SWITCH_DELAY_MS)

    d2 = start(pki, tmp_path, daemons, init=False, port=d.port)
    restarted = time.monotonic()
    assert "restart grace" in d2.stderr()
    with d2.connect("c1", "B") as b, d2.connect("c1", "A") as a:
        vb = b.heartbeat(1, True, 1)
        assert (vb.granted, vb.epoch, vb.holder) == (False, 1, "A")  # no double grant
        q = a.heartbeat(1, False, 1)
        assert (q.granted, q.holder) == (False, "A")  # not granted until it renews
        va = a.heartbeat(2, True, 1)
        assert (va.granted, va.epoch, va.holder) == (True, 1, "A")  # renewed, same epoch
        vb = b.heartbeat(2, True, 1)
        assert (vb.granted, vb.holder) == (False, "A")
    # c2: the recorded holder B stays silent; A must wait out the whole grace
    with d2.connect("c2", "A") as a2:
        seq = 0
        while True:
            seq += 1
            v = a2.heartbeat(seq, True, 1)
            answered = time.monotonic()
            if v.granted:
                break
            assert v.holder in ("B", None)
            assert answered < restarted + GRACE + 3.0, "never granted after grace"
            time.sleep(0.03)
        # grace runs from when the daemon read the state: after it was started
        assert answered >= d2.started_at + GRACE, "granted during restart grace"
        assert (v.epoch, v.holder) == (2, "A")
    assert d2.terminate() == 0


def test_a_crash_after_a_grant_does_not_lose_the_epoch(
    pki: Pki, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    d = start(pki, tmp_path, daemons, init=True)
    with d.connect("c1", "A") as a:
        assert a.heartbeat(1, True, 1).epoch == 1
        assert a.release().epoch == 1
    with d.connect("c1", "B") as b:
        assert b.heartbeat(1, True, 1).epoch == 2
    d.proc.send_signal(signal.SIGKILL)  # no chance to persist on the way out
    d.wait()
    state = read_state(d.state_file)
    assert (state.clusters["c1"].epoch, state.clusters["c1"].holder) == (2, "B")
    d2 = start(pki, tmp_path, daemons, init=False, port=d.port)
    with d2.connect("c1", "A") as a:
        v = a.heartbeat(1, True, 1)
        assert (v.granted, v.epoch, v.holder) == (False, 2, "B")
    d2.terminate()


def test_maxima_are_raised_before_serving(
    pki: Pki, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    (tmp_path / "quorumd.state").write_text(
        json.dumps({"format": 1, "max_lease_ms": 100, "max_switch_delay_ms": 5000, "clusters": {}})
    )
    d = start(pki, tmp_path, daemons, init=False)
    state = read_state(d.state_file)
    assert (state.max_lease_ms, state.max_switch_delay_ms) == (LEASE_MS, 5000)
    assert "no new grants for 5.600s" in d.stderr()
    assert d.terminate() == 0


def test_cli_certs_and_status(pki: Pki, tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    out = tmp_path / "certs"
    run = subprocess.run(
        [sys.executable, "-m", "drorch", "quorum", "certs", "--out", str(out), "x1", "x2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["x1", "x2"]
    assert all(ln.split()[1].startswith("sha256:") and len(ln.split()[1]) == 71 for ln in lines)
    assert (out / "x1.key").stat().st_mode & 0o777 == 0o600
    again = subprocess.run(
        [sys.executable, "-m", "drorch", "quorum", "certs", "--out", str(out), "x2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr

    d = start(pki, tmp_path, daemons, init=True)
    with d.connect("c1", "A") as a:
        a.heartbeat(1, True, 3)
        status = subprocess.run(
            [
                sys.executable, "-m", "drorch", "quorum", "status",
                "--server", d.server, "--fingerprint", pki.fingerprints["server"],
                "--cert", str(pki.cert("c1-b")), "--key", str(pki.key("c1-b")),
                "--cluster", "c1", "--site", "B", "--node", "b1", "--format", "json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {
        "seq": 1,
        "granted": False,
        "epoch": 1,
        "holder": "A",
        "lease_ms": LEASE_MS,
    }
    assert d.terminate() == 0


def test_sigusr1_logs_status_with_partition_sizes(
    pki: Pki, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    d = start(pki, tmp_path, daemons, init=True)
    with d.connect("c1", "A", "a1") as a, d.connect("c1", "B", "b7") as b:
        a.heartbeat(1, True, 3)
        b.heartbeat(1, True, 1)
        d.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "status c2:" not in d.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
    log = d.stderr()
    assert "c1/A: node a1 sees 3 node(s) in its partition" in log
    assert "status: 2 session(s), 0 without hello" in log
    line = next(ln for ln in log.splitlines() if "status c1:" in ln)
    assert "holder A, epoch 1" in line
    assert "A: a1(3 nodes); B: b7(1 nodes)" in line
    assert "status c2: holder -, epoch 0, lease left - s, sessions -" in log
    assert d.terminate() == 0


def test_a_grant_that_cannot_be_persisted_is_never_announced(
    pki: Pki, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    port = free_port()
    path = tmp_path / "quorumd.yaml"
    (tmp_path / "state").mkdir()
    path.write_text(
        config_text(pki, port).replace("state_file: quorumd.state", "state_file: state/q.state")
    )
    d = DaemonProcess(pki, port, path, init=True)
    daemons.append(d)
    d.wait_listening()
    with d.connect("c1", "A") as a:
        (tmp_path / "state").rename(tmp_path / "state-gone")  # the disk "fails"
        try:
            vote = a.heartbeat(1, True, 1)
        except Exception as exc:  # the daemon stops instead of answering
            vote = None
            assert "closed" in str(exc) or "receive failed" in str(exc)
    assert vote is None, "a grant was announced without being durable"
    assert d.wait() == 1
    assert "cannot persist the quorum state" in d.stderr()
    state = read_state(tmp_path / "state-gone" / "q.state")
    assert state.clusters == {}


def test_recovering_a_lost_state_starts_above_old_epochs_with_grace(
    pki: Pki, tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    port = free_port()
    path = tmp_path / "quorumd.yaml"
    path.write_text(config_text(pki, port))
    without_init = DaemonProcess(pki, port, path, extra=("--recover-epoch", "7"))
    daemons.append(without_init)
    assert without_init.wait() == 2 and "needs --init" in without_init.stderr()
    d = DaemonProcess(pki, port, path, init=True, extra=("--recover-epoch", "7"))
    daemons.append(d)
    d.wait_listening()
    assert "recovering a lost state: 2 cluster(s) start at epoch 7" in d.stderr()
    with d.connect("c1", "A") as a:
        seq = 0
        while True:
            seq += 1
            v = a.heartbeat(seq, True, 1)
            answered = time.monotonic()
            if v.granted:
                break
            assert (v.epoch, v.holder) == (7, None)
            assert answered < d.started_at + GRACE + 5, "never granted"
            time.sleep(0.03)
    assert answered >= d.started_at + GRACE, "a recovered witness granted during grace"
    assert v.epoch == 8  # above every epoch the replicas may have seen
    assert d.terminate() == 0
    assert read_state(d.state_file).clusters["c2"].epoch == 7
