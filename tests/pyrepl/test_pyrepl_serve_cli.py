"""`drorch repl serve` as real processes: the CLI, SIGTERM, and kill -9 of a primary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.ports import free_port
from tests.pyrepl.conftest import ServeProcess, wait_until
from tests.pyrepl.nbd_client import NbdClient

Start = Callable[..., ServeProcess]
STATUS_KEYS = {
    "name",
    "role",
    "disk",
    "connection",
    "mode",
    "out_of_sync_bytes",
    "lag_bytes",
    "generation",
    "epoch",
    "nbd",
}


def block(i: int) -> bytes:
    return i.to_bytes(4, "big") * 1024


def synced(p: ServeProcess) -> bool:
    st = p.status()
    return st["connection"] == "Connected" and st["disk"] == "UpToDate"


def pair(
    processes: Start, mode: str, extra: tuple[str, ...] = ()
) -> tuple[ServeProcess, ServeProcess]:
    b = processes("b", "secondary", mode, extra=extra)
    a = processes("a", "primary", mode, peer=b.listen, extra=extra)
    wait_until(
        "connected",
        lambda: (
            b.status()["connection"] == "Connected"
            and b.status()["disk"] == "UpToDate"
            and a.status()["connection"] == "Connected"
        ),
    )
    return a, b


def test_status_json_and_table(processes: Start) -> None:
    a = processes("a", "primary", "async")
    data = a.status_json()
    assert set(data) >= STATUS_KEYS
    assert (data["name"], data["role"], data["disk"], data["mode"]) == (
        "vol",
        "primary",
        "UpToDate",
        "async",
    )
    assert data["connection"] == "Connecting"
    assert data["nbd"].startswith("nbd://127.0.0.1:") and data["nbd"].endswith("/vol")
    assert isinstance(data["generation"], dict) and data["generation"]["current"] != "0"
    table = a.cli("status", "--control", str(a.control), "--format", "table")
    assert table.returncode == 0 and "UpToDate" in table.stdout
    yaml_out = a.cli("status", "--control", str(a.control), "--format", "yaml")
    assert "role: primary" in yaml_out.stdout


def test_sigterm_flushes_and_exits_zero(processes: Start) -> None:
    a = processes("a", "primary", "async")
    with NbdClient(*a.nbd, "vol") as c:
        c.write(4096, b"kept" * 1024)
    assert a.terminate() == 0
    assert "stopped cleanly" in a.log.read_text()
    assert a.backing.read_bytes()[4096 : 4096 + 4096] == b"kept" * 1024
    assert a.backing.stat().st_size == 4 * 1024 * 1024


def test_promote_of_inconsistent_secondary_exits_3(processes: Start) -> None:
    b = processes("b", "secondary", "sync")
    out = b.cli("promote", "--yes", "--control", str(b.control), "--epoch", "4")
    assert out.returncode == 3
    assert "Inconsistent" in out.stderr and "--force --accept-data-loss" in out.stderr
    out = b.cli("promote", "--yes", "--control", str(b.control), "--force")
    assert out.returncode == 2  # usage: --force needs --accept-data-loss
    out = b.cli(
        "promote",
        "--yes",
        "--control",
        str(b.control),
        "--epoch",
        "4",
        "--force",
        "--accept-data-loss",
        "--format",
        "json",
    )
    assert out.returncode == 0, out.stderr
    assert b.status_json()["role"] == "primary"


def test_cli_errors(processes: Start, tmp_path: os.PathLike[str]) -> None:
    b = processes("b", "secondary", "sync")
    out = b.cli("status", "--control", f"{tmp_path}/nothing.ctl")
    assert out.returncode == 1 and "no pyrepl daemon answers" in out.stderr
    out = b.cli(
        "serve",
        "--name",
        "v",
        "--backing",
        "x",
        "--size",
        "1MiB",
        "--role",
        "primary",
        "--mode",
        "sync",
        "--listen",
        "nonsense",
        "--control",
        "c",
    )
    assert out.returncode == 2 and "HOST:PORT" in out.stderr
    out = b.cli("status")
    assert out.returncode == 2
    out = b.cli("verify", "--control", str(b.control))
    assert out.returncode == 1 and "needs a connected peer" in out.stderr


def test_kill_9_primary_mid_writes_then_promote_loses_no_acked_write(processes: Start) -> None:
    a, b = pair(processes, "sync")
    acked: list[int] = []
    failed = threading.Event()

    def writer() -> None:
        try:
            with NbdClient(*a.nbd, "vol") as c:
                for i in range(1, 1024):
                    c.write(i * 4096, block(i))
                    acked.append(i)
        except (OSError, EOFError, AssertionError):
            failed.set()

    t = threading.Thread(target=writer)
    t.start()
    wait_until("some writes acknowledged", lambda: len(acked) >= 50 or not t.is_alive())
    a.kill9()
    t.join(30)
    assert failed.is_set(), "the writer saw the primary die mid-stream"
    assert 50 <= len(acked) < 1023
    out = b.cli("promote", "--yes", "--control", str(b.control), "--epoch", "2", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["message"].startswith("promoted")
    data = b.backing.read_bytes()
    lost = [i for i in acked if data[i * 4096 : (i + 1) * 4096] != block(i)]
    assert lost == [], f"acknowledged writes lost: {lost[:5]}"
    with NbdClient(*b.nbd, "vol") as c:  # and the new primary serves them, writable
        assert not c.read_only
        assert c.read(acked[-1] * 4096, 4096) == block(acked[-1])


def test_kill_9_async_primary_leaves_a_prefix(processes: Start) -> None:
    a, b = pair(processes, "async")
    acked: list[int] = []

    def writer() -> None:
        try:
            with NbdClient(*a.nbd, "vol") as c:
                for i in range(1, 1024):
                    c.write(i * 4096, block(i))
                    acked.append(i)
        except (OSError, EOFError, AssertionError):
            pass

    t = threading.Thread(target=writer)
    t.start()
    wait_until("writes flowing", lambda: len(acked) >= 200 or not t.is_alive())
    a.kill9()
    t.join(30)
    data = b.backing.read_bytes()
    present = [data[i * 4096 : (i + 1) * 4096] == block(i) for i in range(1, 1024)]
    applied = present.index(False) if False in present else len(present)
    assert not any(present[applied:]), "the replica is a prefix of the primary's writes"
    assert applied > 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_restarted_old_primary_resyncs_from_the_promoted_side(processes: Start, mode: str) -> None:
    a, b = pair(processes, mode)
    with NbdClient(*a.nbd, "vol") as c:
        c.write(0, b"1" * 65536)
    a.kill9()
    out = b.cli("promote", "--yes", "--control", str(b.control), "--epoch", "1")
    assert out.returncode == 0, out.stderr
    if mode == "sync":  # fencing resource-only: b writes alone only once a is outdated
        refused = b.cli("outdate-peer", "--control", str(b.control))
        assert refused.returncode == 3 and "--accept-data-loss" in refused.stderr
        out = b.cli("outdate-peer", "--control", str(b.control), "--accept-data-loss", "--yes")
        assert out.returncode == 0, out.stderr
    with NbdClient(*b.nbd, "vol") as c:
        c.write(65536, b"2" * 65536)
    # the old primary comes back (same backing file and metadata) as secondary
    a2 = processes("a", "secondary", mode, peer=b.listen)
    wait_until(
        "resync",
        lambda: a2.status()["disk"] == "UpToDate" and a2.status()["connection"] == "Connected",
        timeout=30,
    )
    assert a2.backing.read_bytes() == b.backing.read_bytes()


def test_cli_disconnect_stop_outdate_dry_run_and_ask(processes: Start) -> None:
    """Each takes --dry-run (the daemon's `would_*`: same refusals, no change) and
    --yes; with no terminal and no --yes nothing is done."""
    a, b = pair(processes, "sync")
    dry = a.cli("disconnect", "--control", str(a.control), "--dry-run", "--format", "json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["message"].startswith("would disconnect (Connected)")
    unasked = a.cli("disconnect", "--control", str(a.control))
    assert unasked.returncode == 1 and "not confirmed (no terminal to ask on)" in unasked.stderr
    assert a.status_json()["connection"] == "Connected"
    dry = a.cli("stop", "--control", str(a.control), "--dry-run")
    assert dry.returncode == 3 and "refusing to stop a primary" in dry.stderr
    dry = b.cli("stop", "--control", str(b.control), "--dry-run", "--format", "json")
    assert json.loads(dry.stdout)["message"] == "would stop this secondary's daemon (flush, exit 0)"
    unasked = b.cli("stop", "--control", str(b.control))
    assert unasked.returncode == 1 and b.status_json()["role"] == "secondary"  # still up
    dry = a.cli("outdate-peer", "--control", str(a.control), "--accept-data-loss", "--dry-run")
    assert dry.returncode == 3 and "the peer is connected" in dry.stderr


def test_cli_disconnect_write_connect_shows_resync_progress(processes: Start) -> None:
    a, b = pair(processes, "sync")
    out = a.cli("disconnect", "--control", str(a.control), "--format", "json", "--yes")
    assert out.returncode == 0 and json.loads(out.stdout)["message"] == "StandAlone"
    with NbdClient(*a.nbd, "vol") as c:
        for i in range(8):
            c.write(i * 3 * 65536, b"\x42" * 65536)
    st = a.status_json()
    assert st["connection"] == "StandAlone" and st["out_of_sync_bytes"] == 8 * 65536
    out = a.cli("connect", "--control", str(a.control), "--format", "json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["connection"] == "Connected" and result["disk"] == "UpToDate"
    # drawn even when a resync this small ends before the first poll
    assert "resync vol [" in out.stderr and "100.0%" in out.stderr, out.stderr
    assert "524288 B were out of sync" in out.stderr
    assert a.backing.read_bytes() == b.backing.read_bytes()
    assert a.status_json()["extra"]["stats"]["resync_bytes_sent"] >= 8 * 65536


def test_cli_errors_are_json_on_stdout_with_format_json(processes: Start) -> None:
    a, b = pair(processes, "sync")
    out = b.cli("promote", "--yes", "--control", str(b.control), "--format", "json")
    assert out.returncode == 3  # a refusal (README: 3 unsafe operation refused)
    error = json.loads(out.stdout)["error"]
    assert error["type"] == "UnsafeOperation" and "peer is primary" in error["message"]
    out = a.cli(
        "resolve", "--control", str(a.control), "--discard-local", "--format", "yaml", "--yes"
    )
    assert out.returncode == 3 and "type: UnsafeOperation" in out.stdout
    assert "while primary" in out.stderr
    out = a.cli("stop", "--control", str(a.control))
    assert out.returncode == 3 and "refusing to stop a primary" in out.stderr
    out = a.cli("status", "--control", str(a.control))
    assert out.returncode == 0  # the refusals changed nothing


def test_status_of_every_volume_on_a_node_from_the_config() -> None:
    from tests.pyrepl.conftest import REPO

    proc = ServeProcess.__new__(ServeProcess)  # only for its cli() helper
    out = proc.cli(
        "status", "-c", str(REPO / "lab" / "sim.yaml"), "--node", "a1", "--format", "json"
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {r["name"] for r in rows} >= {"appdata"}
    assert all(set(r) >= STATUS_KEYS for r in rows)
    out = proc.cli("status", "--control", "x", "-c", "y", "--node", "a1")
    assert out.returncode == 2


def test_both_sides_dial_each_other_and_one_link_survives(processes: Start) -> None:
    """The DRBD-like symmetric setup: each side has --listen and --peer."""
    pa, pb = free_port(), free_port()
    b = processes("b", "secondary", "sync", peer=f"127.0.0.1:{pa}", listen=f"127.0.0.1:{pb}")
    a = processes("a", "primary", "sync", peer=f"127.0.0.1:{pb}", listen=f"127.0.0.1:{pa}")
    wait_until("connected", lambda: synced(a) and synced(b))
    for side in (a, b):  # either side may drop and re-establish it
        out = side.cli("disconnect", "--control", str(side.control), "--yes")
        assert out.returncode == 0
        out = side.cli("connect", "--control", str(side.control), "--format", "json")
        assert out.returncode == 0, out.stderr
        wait_until("reconnected", lambda: synced(a) and synced(b))
    with NbdClient(*a.nbd, "vol") as c:
        c.write(0, b"symmetric" * 100)
    assert b.backing.read_bytes()[:900] == b"symmetric" * 100


def test_cli_promote_at_an_epoch_already_seen_exits_5_with_what_to_do(
    processes: Start,
) -> None:
    """Epochs are strict (as `drbd primary`): a new primary at the epoch this replica
    already saw is refused with exit 5 and the epoch it needs; a greater one is taken."""
    a, _b = pair(processes, "sync")
    ctl_a = ("--control", str(a.control))
    assert a.cli("promote", "--yes", *ctl_a, "--epoch", "1").returncode == 0
    assert a.cli("demote", "--yes", *ctl_a).returncode == 0
    for stale in ("1", "0"):
        out = a.cli("promote", "--yes", *ctl_a, "--epoch", stale)
        assert out.returncode == 5, out.stderr
        assert "a promotion needs an epoch greater than 1" in out.stderr, out.stderr
    assert a.status_json()["role"] == "secondary"
    assert a.cli("promote", "--yes", *ctl_a, "--epoch", "2").returncode == 0
    assert a.status_json()["epoch"] == 2


def test_cli_stale_primary_exits_5_and_split_brain_exits_4(processes: Start) -> None:
    a, b = pair(processes, "sync", ("--fencing", "dont-care"))  # a split brain on purpose
    ctl_a, ctl_b = ("--control", str(a.control)), ("--control", str(b.control))
    assert a.cli("promote", "--yes", *ctl_a, "--epoch", "1").returncode == 0
    assert b.status_json()["epoch"] == 1, "the secondary learned the epoch in the stream"
    assert a.cli("disconnect", *ctl_a, "--yes").returncode == 0
    assert b.cli("promote", "--yes", *ctl_b, "--epoch", "2").returncode == 0  # quorum moved to B
    out = a.cli("connect", *ctl_a)
    assert out.returncode == 5 and "stale primary" in out.stderr
    # the operator demotes the stale side and both write while apart: split brain
    assert a.cli("demote", "--yes", *ctl_a).returncode == 0
    with NbdClient(*b.nbd, "vol") as c:
        c.write(0, b"B" * 4096)
    assert b.cli("disconnect", *ctl_b, "--yes").returncode == 0
    assert a.cli("promote", "--yes", *ctl_a, "--epoch", "3").returncode == 0
    with NbdClient(*a.nbd, "vol") as c:
        c.write(65536, b"A" * 4096)
    assert a.cli("demote", "--yes", *ctl_a).returncode == 0
    assert b.cli("demote", "--yes", *ctl_b).returncode == 0
    a.cli("connect", *ctl_a, "--no-wait")
    out = b.cli("connect", *ctl_b, "--format", "json")
    assert out.returncode == 4, out.stderr
    error = json.loads(out.stdout)["error"]
    assert error["type"] == "SplitBrain" and error["local"]["current"] != error["peer"]["current"]
    out = a.cli("resolve", *ctl_a, "--discard-local", "--format", "json", "--yes")
    assert out.returncode == 0, out.stderr
    assert b.cli("connect", *ctl_b).returncode == 0
    wait_until("resolved", lambda: synced(a) and synced(b))
    assert a.backing.read_bytes() == b.backing.read_bytes()
    assert a.backing.read_bytes()[:4096] == b"B" * 4096


def test_sigterm_under_load_still_exits_zero(processes: Start) -> None:
    a, b = pair(processes, "async")
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        try:
            with NbdClient(*a.nbd, "vol") as c:
                i = 0
                while not stop.is_set() and i < 5000:
                    c.write((i % 64) * 65536, block(i) * 16)
                    written.append(i)
                    i += 1
        except (OSError, EOFError, AssertionError):
            pass

    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_until("writes flowing", lambda: len(written) > 20 or not t.is_alive())
        assert a.terminate(timeout=30) == 0
        assert b.terminate(timeout=30) == 0
    finally:
        stop.set()
        t.join(30)
    assert "stopped cleanly" in a.log.read_text()


def test_a_lost_backing_file_is_not_silently_recreated(processes: Start) -> None:
    a = processes("a", "primary", "sync")
    assert a.terminate() == 0
    a.backing.unlink()
    out = a.cli(
        "serve",
        "--name",
        "vol",
        "--backing",
        str(a.backing),
        "--size",
        "4MiB",
        "--role",
        "primary",
        "--mode",
        "sync",
        "--listen",
        "127.0.0.1:0",
        "--control",
        str(a.control),
    )
    assert out.returncode == 1
    assert "is missing" in out.stderr and "refusing to start on an empty disk" in out.stderr
    assert not a.backing.exists()


@pytest.mark.parametrize(
    ("mode", "extra", "flag"),
    [
        ("sync", ("--max-lag", "1MiB"), "--max-lag"),
        ("sync", ("--on-congestion", "pull-ahead"), "--on-congestion"),
        ("async", ("--fencing", "dont-care"), "--fencing"),
        ("async", ("--freeze-timeout", "5s"), "--freeze-timeout"),
        ("async", ("--fence-peer-cmd", "true"), "--fence-peer-cmd"),
    ],
)
def test_serve_refuses_options_of_the_other_mode(
    tmp_path: Path, mode: str, extra: tuple[str, ...], flag: str
) -> None:
    argv = [sys.executable, "-m", "drorch", "repl", "serve", "--name", "vol", "--backing"]
    argv += [str(tmp_path / "x.img"), "--size", "1MiB", "--role", "primary", "--mode", mode]
    argv += ["--listen", "127.0.0.1:0", "--control", str(tmp_path / "x.ctl"), *extra]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2, out.stderr
    assert f"drorch: error: {flag} applies to " in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "x.img").exists(), "refused before touching anything"


def test_set_mode_cli_switches_and_shows_the_time_outdated(processes: Start) -> None:
    a, b = pair(processes, "async")
    dry = a.cli("set-mode", "sync", "--control", str(a.control), "--dry-run", "--format", "json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["message"].startswith("would switch to sync: drain the ")
    unasked = a.cli("set-mode", "sync", "--control", str(a.control))
    assert unasked.returncode == 1 and "not confirmed (no terminal to ask on)" in unasked.stderr
    assert a.status()["mode"] == "async"
    out = a.cli("set-mode", "sync", "--control", str(a.control), "--format", "json", "--yes")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["mode"] == "sync"
    assert b.status()["mode"] == "sync"
    bad = a.cli("set-mode", "sync", "--max-lag", "1MiB", "--control", str(a.control))
    assert bad.returncode == 2 and "drorch: error: --max-lag applies to async" in bad.stderr
    for fmt in ("table", "json", "yaml"):
        shown = a.cli("status", "--control", str(a.control), "--format", fmt)
        assert shown.returncode == 0 and "outdated_since" in shown.stdout, fmt
