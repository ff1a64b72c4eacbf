"""`drorch drbd ...` end to end: real config loading, a LocalRunner for `address: local`
nodes, and fake drbdadm/drbdsetup scripts on PATH printing recorded-format fixtures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from drorch.cli.main import cli
from drorch.replication.drbd.fence_peer import UNDECIDED
from drorch.replication.node_status import UnknownNode, volume_statuses
from tests.drbd.fakebin import install_fake_drbd
from tests.drbd.test_drbd_render import drbdadm

LAB = Path(__file__).resolve().parents[2] / "lab" / "drbd.yaml"


def lab_without_witness(tmp_path: Path) -> Path:
    """lab/drbd.yaml minus its witness: promotion paths that are about DRBD alone (with a
    witness, `drbd primary` asks it first: tests/drbd/test_drbd_fence_peer.py)."""
    lines = LAB.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("witness:"))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" "))
    path = tmp_path / "drbd-no-witness.yaml"
    path.write_text("".join(lines[:start] + lines[end:]))
    return path


@pytest.fixture
def fake_env(tmp_path: Path) -> dict[str, str]:
    bin_dir = install_fake_drbd(tmp_path / "bin")
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "DRBD_FAKE_LOG": str(tmp_path / "calls.log"),
        "DRBD_FAKE_STATE": "connected-secondary",
        "DRORCH_DRBD_STATE_DIR": str(tmp_path / "state"),
    }


def invoke(env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def calls(env: dict[str, str]) -> list[str]:
    path = Path(env["DRBD_FAKE_LOG"])
    return path.read_text().splitlines() if path.exists() else []


def test_render_lab_example_passes_real_drbdadm(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["drbd", "render", "-c", str(LAB), "r0"])
    assert result.exit_code == 0, result.output
    res = tmp_path / "r0.res"
    res.write_text(result.stdout)
    for host in ("a1", "b1"):
        dump = drbdadm(res, host, "dump", "r0")
        assert dump.returncode == 0, dump.stderr
    assert "protocol C;" in result.stdout
    assert 'fence-peer "drorch drbd fence-peer -c /etc/drorch/cluster.yaml";' in result.stdout


def test_render_problem_points_at_the_setting(tmp_path: Path) -> None:
    """What DRBD cannot use (a relative backing disk) is a validation error, at
    FILE:LINE:COL of that setting, exit 2: `config validate` and `drbd render` say the same."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(LAB.read_text().replace("a1: /dev/vg_a/r0 ", "a1: vg_a/r0     "))
    line = next(i for i, ln in enumerate(bad.read_text().splitlines()) if "a1: vg_a" in ln) + 1
    expected = [
        f"{bad}:{line}:7: drbd-option: volume r0: backing disk 'vg_a/r0' of a1 is not an "
        "absolute path",
    ]
    for args in (["drbd", "render", "-c", str(bad), "r0"], ["config", "validate", "-c", str(bad)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2
        assert (result.stderr or result.stdout).splitlines() == expected


def test_validate_refuses_what_render_refuses(tmp_path: Path) -> None:
    """The issue's example: `config validate` used to say ok to it."""
    bad = tmp_path / "bad.yaml"
    text = LAB.read_text()
    for old, new in (
        ("device: /dev/drbd0", "device: /dev/sdb"),
        ("ping_timeout: 500ms", "ping_timeout: 100s"),
        ("ko_count: 7", "ko_count: 5000"),
    ):
        assert old in text
        text = text.replace(old, new, 1)
    bad.write_text(text)
    result = CliRunner().invoke(cli, ["config", "validate", "-c", str(bad)])
    assert result.exit_code == 2, result.output
    out = result.stdout + result.stderr
    for message in (
        "drbd-option: volume r0: device '/dev/sdb' is not a /dev/drbdN device",
        "drbd-option: volume r0: ping_timeout 100.0s is outside DRBD's 0.1s..30s",
        "drbd-option: volume r0: ko_count 5000 is outside DRBD's 0..200",
    ):
        assert re.search(rf"^{re.escape(str(bad))}:\d+:\d+: {re.escape(message)}$", out, re.M), out


def test_render_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(LAB.read_text().replace("mode: sync", "mode: sideways"))
    result = CliRunner().invoke(cli, ["drbd", "render", "-c", str(bad), "r0"])
    assert result.exit_code == 2
    assert f"{bad}:" in result.stderr and "sideways" in result.stderr
    result = CliRunner().invoke(cli, ["drbd", "render", "-c", str(LAB), "nope"])
    assert result.exit_code == 2
    assert "no volume 'nope' in drbd-lab (DRBD volumes: r0)" in result.stderr


def test_repl_status_keys_for_every_volume_on_the_node(fake_env: dict[str, str]) -> None:
    fake_env["DRBD_FAKE_STATE"] = "sync-target"
    old = dict(os.environ)
    os.environ.update(fake_env)
    try:
        rows = volume_statuses(LAB, "b1")
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert len(rows) == 1
    row = rows[0]
    for key in (
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
    ):
        assert key in row, key
    assert (row["name"], row["driver"], row["node"]) == ("r0", "drbd", "b1")
    assert (row["role"], row["disk"], row["connection"]) == (
        "secondary",
        "Inconsistent",
        "SyncTarget",
    )
    assert row["resync_eta_seconds"] == 12.0
    assert row["generation"]["current"] == "F3A1D1F7F5ECF34A"
    assert calls(fake_env) == ["drbdsetup status r0 --json", "drbdsetup get-gi r0 1 0"]
    with pytest.raises(UnknownNode):
        volume_statuses(LAB, "zz")


def test_repl_status_cli_when_available(fake_env: dict[str, str]) -> None:
    """`drorch repl status -c CONFIG --node NODE --format json` (the pyrepl helper's
    command, which calls volume_statuses)."""
    result = invoke(fake_env, "repl", "status", "-c", str(LAB), "--node", "a1", "--format", "json")
    if result.exit_code == 2 and "No such option: -c" in result.stderr:
        pytest.fail("drorch repl status has no -c/--node form yet")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    rows = rows if isinstance(rows, list) else rows.get("volumes", rows)
    assert rows[0]["name"] == "r0" and rows[0]["connection"] == "Connected"


def test_drbd_status_all_sources(fake_env: dict[str, str]) -> None:
    fake_env["DRBD_FAKE_STATE"] = "primary-connected"
    for source in ("json", "events2"):
        result = invoke(
            fake_env,
            "drbd",
            "status",
            "-c",
            str(LAB),
            "--node",
            "a1",
            "--source",
            source,
            "--format",
            "json",
        )
        assert result.exit_code == 0, result.output
        row = json.loads(result.stdout)[0]
        assert (row["role"], row["peer_disk"], row["node"]) == ("primary", "UpToDate", "a1")
        if source == "json":
            assert row["generation"]["current"] == "F3A1D1F7F5ECF34A"
    table = invoke(fake_env, "drbd", "status", "-c", str(LAB), "--node", "a1")
    assert "NAME" in table.stdout and "primary" in table.stdout


def test_drbd_status_missing_module(fake_env: dict[str, str]) -> None:
    fake_env["DRBD_FAKE_STATE"] = "no-module"
    result = invoke(fake_env, "drbd", "status", "-c", str(LAB), "--node", "a1")
    assert result.exit_code == 1
    assert "the drbd kernel module is not loaded" in result.stderr


def test_operations_run_drbdadm_through_the_local_runner(fake_env: dict[str, str]) -> None:
    fake_env["DRBD_FAKE_STATE"] = "standalone"
    fake_env["DRBD_FAKE_EVENTS"] = "connecting"  # after drbdadm connect: peer not up yet
    result = invoke(fake_env, "drbd", "connect", "-c", str(LAB), "r0", "--node", "a1")
    assert result.exit_code == 0, result.output
    assert "drbdadm connect r0" in calls(fake_env)
    fake_env["DRBD_FAKE_STATE"] = "down"
    result = invoke(fake_env, "drbd", "up", "-c", str(LAB), "r0", "--node", "b1")
    assert result.exit_code == 0, result.output
    assert calls(fake_env)[-1] == "drbdadm up r0"


def test_primary_error_paths_exit_1_with_drbd_message(
    fake_env: dict[str, str], tmp_path: Path
) -> None:
    lab = lab_without_witness(tmp_path)
    fake_env["DRBD_FAKE_FAIL"] = "drbdadm-primary-peer-primary.stderr"
    unasked = invoke(fake_env, "drbd", "primary", "-c", str(lab), "r0", "--node", "a1")
    assert unasked.exit_code == 1 and "not confirmed (no terminal to ask on)" in unasked.stderr
    assert not [c for c in calls(fake_env) if c.startswith("drbdadm")], "observed, changed nothing"
    result = invoke(fake_env, "drbd", "primary", "-c", str(lab), "r0", "--node", "a1", "--yes")
    assert result.exit_code == 1
    assert "the peer is still Primary; demote it first" in result.stderr
    assert "Multiple primaries not allowed by config" in result.stderr
    del fake_env["DRBD_FAKE_FAIL"]
    fake_env["DRBD_FAKE_STATE"] = "outdated-local"
    result = invoke(fake_env, "drbd", "primary", "-c", str(lab), "r0", "--node", "a1", "--force")
    assert result.exit_code == 3
    assert "--force also needs --accept-data-loss" in result.stderr
    assert [c for c in calls(fake_env) if c.startswith("drbdadm primary")] == [
        "drbdadm primary r0"  # only the first attempt reached drbdadm
    ]


def test_primary_at_an_epoch_already_recorded_exits_5_with_what_to_do(
    fake_env: dict[str, str], tmp_path: Path
) -> None:
    """Epochs are strict: `drbd primary --epoch E` where the node recorded E refuses with
    StaleEpoch's exit code (5, as `repl promote`), says what to use, and runs no drbdadm."""
    lab = lab_without_witness(tmp_path)
    state = Path(fake_env["DRORCH_DRBD_STATE_DIR"])
    state.mkdir(parents=True)
    (state / "r0.epoch").write_text("7\n")
    for stale in ("7", "6"):
        args = ("drbd", "primary", "-c", str(lab), "r0", "--node", "a1", "--yes")
        result = invoke(fake_env, *args, "--epoch", stale)
        assert result.exit_code == 5, result.output
        assert "a promotion needs an epoch greater than 7" in result.stderr
    assert not [c for c in calls(fake_env) if c.startswith("drbdadm primary")]
    assert (state / "r0.epoch").read_text().strip() == "7"
    args = ("drbd", "primary", "-c", str(lab), "r0", "--node", "a1", "--yes", "--epoch", "8")
    assert invoke(fake_env, *args).exit_code == 0
    assert (state / "r0.epoch").read_text().strip() == "8"


def test_destructive_commands_need_the_acknowledgement(fake_env: dict[str, str]) -> None:
    for args in (["invalidate"], ["resolve", "--discard-local"]):
        result = invoke(fake_env, "drbd", *args, "-c", str(LAB), "r0", "--node", "b1")
        assert result.exit_code == 3
        assert "repeat with --accept-data-loss" in result.stderr
    assert calls(fake_env) == []


def test_create_md_and_adjust_dry_run_and_ask(fake_env: dict[str, str]) -> None:
    """--dry-run checks what the real run checks and runs nothing; without --yes the
    command asks, and no answer changes nothing."""
    base = ["-c", str(LAB), "r0", "--node", "b1"]
    dry = invoke(fake_env, "drbd", "create-md", *base, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith("would run: drbdadm create-md r0 (refused by drbdmeta")
    forced = invoke(fake_env, "drbd", "create-md", *base, "--force", "--dry-run")
    assert forced.exit_code == 3
    assert forced.stderr.startswith("drorch: error: refused: create-md --force also needs")
    unasked = invoke(fake_env, "drbd", "create-md", *base)
    assert unasked.exit_code == 1 and "not confirmed (no terminal to ask on)" in unasked.stderr
    assert calls(fake_env) == []
    done = invoke(fake_env, "drbd", "create-md", *base, "--yes")
    assert done.exit_code == 0, done.output
    assert calls(fake_env) == ["drbdadm create-md r0"]
    adjust_dry = invoke(fake_env, "drbd", "adjust", *base, "--dry-run")
    assert adjust_dry.exit_code == 0, adjust_dry.output
    assert adjust_dry.stdout.startswith("would run: drbdadm adjust r0")
    assert calls(fake_env)[1:] == ["drbdadm -d adjust r0"]  # drbdadm's own dry run
    adjusted = invoke(fake_env, "drbd", "adjust", *base, "--yes")
    assert adjusted.exit_code == 0, adjusted.output
    assert calls(fake_env)[2:] == ["drbdadm -d adjust r0", "drbdadm adjust r0"]


def test_adjust_dry_run_fails_where_the_real_one_does(fake_env: dict[str, str]) -> None:
    fake_env["DRBD_FAKE_FAIL"] = "drbdsetup-status-no-module.stderr"
    fake_env["DRBD_FAKE_RC"] = "20"
    base = ["-c", str(LAB), "r0", "--node", "b1"]
    dry = invoke(fake_env, "drbd", "adjust", *base, "--dry-run")
    real = invoke(fake_env, "drbd", "adjust", *base, "--yes")
    assert dry.exit_code == real.exit_code == 1
    assert "the drbd kernel module is not loaded" in dry.stderr
    assert dry.stderr.startswith("drorch: error: ")


def test_watch_without_the_module_is_an_error_not_a_bug(fake_env: dict[str, str]) -> None:
    fake_env["DRBD_FAKE_STATE"] = "no-module"
    result = invoke(fake_env, "drbd", "watch", "-c", str(LAB), "r0", "--node", "a1")
    assert result.exit_code == 1
    assert result.stderr.startswith("drorch: error: drbd status: the drbd kernel module is not")
    assert "Traceback" not in result.output and "a bug in drorch" not in result.stderr


def test_watch_timeout_takes_a_duration(fake_env: dict[str, str]) -> None:
    fake_env["DRBD_FAKE_STATE"] = "stream"
    args = ["drbd", "watch", "-c", str(LAB), "r0", "--node", "a1", "--count", "1"]
    assert invoke(fake_env, *args, "--timeout", "10s").exit_code == 0
    bad = invoke(fake_env, *args, "--timeout", "soon")
    assert bad.exit_code == 2 and "expected a duration like 500ms" in bad.stderr


def test_watch_follows_events2(fake_env: dict[str, str]) -> None:
    fake_env["DRBD_FAKE_STATE"] = "stream"
    result = invoke(
        fake_env,
        "drbd",
        "watch",
        "-c",
        str(LAB),
        "r0",
        "--node",
        "a1",
        "--format",
        "json",
        "--count",
        "3",
    )
    assert result.exit_code == 0, result.output
    assert calls(fake_env) == ["drbdsetup events2 --statistics r0"]
    assert result.stdout.count('"name": "r0",\n  "role"') == 3


def test_watch_table_until_synced(fake_env: dict[str, str]) -> None:
    fake_env["DRBD_FAKE_STATE"] = "stream"
    result = invoke(
        fake_env, "drbd", "watch", "-c", str(LAB), "r0", "--node", "a1", "--until-synced"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("NAME") and sum(ln.startswith("NAME") for ln in lines) == 1
    # already in sync at the start: --until-synced returns after the first status
    assert len(lines) == 2 and "Connected" in lines[1]
    fake_env["DRBD_FAKE_STATE"] = "sync-target"
    result = invoke(fake_env, "drbd", "watch", "-c", str(LAB), "r0", "--node", "b1")
    assert "resync r0 [" in result.stderr and "25.0% eta 12s" in result.stderr


def test_fence_peer_handler_without_witness_is_undecided(tmp_path: Path) -> None:
    """Run exactly as DRBD would: a subprocess with DRBD's environment."""
    env = dict(os.environ, DRBD_RESOURCE="r0", DRBD_PEER_NODE_ID="1")
    proc = subprocess.run(
        [sys.executable, "-m", "drorch", "drbd", "fence-peer", "-c", str(LAB), "--node", "a1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == UNDECIDED
    assert "cannot ask the witness" in proc.stderr


def test_verify_cli_shows_progress_and_result(fake_env: dict[str, str]) -> None:
    fake_env["DRBD_FAKE_EVENTS"] = "verify"
    result = invoke(
        fake_env, "drbd", "verify", "-c", str(LAB), "r0", "--node", "a1", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["out_of_sync_blocks"] == 0
    assert "comparing checksums with the peer" in result.stderr  # non-tty: throttled bar
    assert "0 blocks out of sync" in result.stderr
    assert "drbdadm verify r0" in calls(fake_env)


def test_status_from_proc_drbd_on_a_node_without_drbd(fake_env: dict[str, str]) -> None:
    """The real `cat /proc/drbd` runs; this machine has no DRBD module, so no file."""
    result = invoke(
        fake_env,
        "drbd",
        "status",
        "-c",
        str(LAB),
        "--node",
        "a1",
        "--source",
        "proc",
        "--format",
        "json",
    )
    # like the other sources: "not loaded", never "secondary, Diskless, 100% in sync"
    assert result.exit_code == 1, result.output
    row = json.loads(result.stdout)[0]
    assert row["role"] == "unknown" and "disk" not in row
    assert "the drbd kernel module is not loaded" in row["extra"]["error"]


@pytest.mark.parametrize(
    ("state", "args", "expected"),
    [
        ("outdated-local", ["primary"], "unsafe: local disk of r0 is Outdated"),
        (
            "outdated-local",
            ["primary", "--force", "--accept-data-loss"],
            "would run: drbdadm primary --force r0",
        ),
        ("secondary-peer-primary", ["primary"], "refuse: the peer is Primary for r0"),
        ("standalone", ["connect"], "would run: drbdadm connect r0"),
        ("connected-secondary", ["up"], "skip: r0 is already up"),
        ("split-brain-b", ["resolve", "--discard-local"], "refuse: r0 is Primary here"),
        ("connected-secondary", ["invalidate"], "would run: drbdadm invalidate r0"),
        (
            "split-brain-b",
            ["invalidate"],
            "refuse: r0 is Primary here: demote it first",
        ),
        ("standalone", ["invalidate"], "would run: drbdadm connect --discard-my-data r0"),
    ],
)
def test_dry_run_prints_the_decision_and_runs_no_drbdadm(
    fake_env: dict[str, str], state: str, args: list[str], expected: str
) -> None:
    """A dry run ends as the real run would: refused exit 1, unsafe exit 3, and the
    data-losing ones without --accept-data-loss exit 3 too."""
    fake_env["DRBD_FAKE_STATE"] = state
    result = invoke(fake_env, "drbd", *args, "-c", str(LAB), "r0", "--node", "a1", "--dry-run")
    verdict = expected.split(":")[0]
    loses_data = args[0] in ("invalidate", "resolve") and "--accept-data-loss" not in args
    code = {"refuse": 1, "unsafe": 3}.get(verdict, 3 if loses_data else 0)
    assert result.exit_code == code, result.output
    assert expected in result.stdout
    if code:
        assert result.stderr.startswith("drorch: error: refused: "), result.stderr
    assert not [c for c in calls(fake_env) if c.startswith("drbdadm")]


def test_repl_status_mixes_drivers(fake_env: dict[str, str], tmp_path: Path) -> None:
    """A pyrepl volume (the sim lab's replicator) next to the DRBD one: one row each."""
    mixed = tmp_path / "mixed.yaml"
    pyrepl = (
        "volumes:\n  - name: appdata\n    driver: pyrepl\n    mode: async\n    size: 16MiB\n"
        "    port: 7790\n    paths:\n      a1: disks/appdata-a1.img\n"
        "      b1: disks/appdata-b1.img\n"
    )
    mixed.write_text(LAB.read_text().replace("volumes:\n", pyrepl))
    result = invoke(
        fake_env, "repl", "status", "-c", str(mixed), "--node", "a1", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    rows = rows if isinstance(rows, list) else rows.get("volumes", rows)
    assert [(r["name"], r["mode"]) for r in rows] == [("appdata", "async"), ("r0", "sync")]
    assert [c for c in calls(fake_env) if c.startswith("drbdsetup status")] == [
        "drbdsetup status r0 --json"  # DRBD asked only about its own volume
    ]


def test_node_and_volume_errors(fake_env: dict[str, str], tmp_path: Path) -> None:
    result = invoke(fake_env, "drbd", "up", "-c", str(LAB), "r0", "--node", "zz")
    assert result.exit_code == 2
    assert "node 'zz' is not in cluster drbd-lab" in result.stderr
    missing = invoke(fake_env, "drbd", "status", "-c", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "No such file" in missing.stderr
    one_sided = tmp_path / "one.yaml"
    one_sided.write_text(LAB.read_text().replace("      b1: /dev/vg_b/r0", ""))
    result = invoke(fake_env, "drbd", "up", "-c", str(one_sided), "r0", "--node", "b1")
    assert result.exit_code == 2  # the loader's FILE:LINE:COL error, before any DRBD call
    assert result.stderr.startswith(f"{one_sided}:") and "volume-site-missing" in result.stderr
    assert calls(fake_env) == []


def test_status_of_every_node(fake_env: dict[str, str]) -> None:
    fake_env["DRBD_FAKE_STATE"] = "split-brain-a"
    result = invoke(fake_env, "drbd", "status", "-c", str(LAB), "--all-nodes", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["node"], r["role"], r["connection"]) for r in rows] == [
        ("a1", "primary", "StandAlone"),
        ("b1", "primary", "StandAlone"),
    ]
    fake_env["DRBD_FAKE_STATE"] = "no-module"
    result = invoke(fake_env, "drbd", "status", "-c", str(LAB), "--all-nodes", "--format", "json")
    assert result.exit_code == 0  # every node gets a row, with the error
    rows = json.loads(result.stdout)
    assert all("kernel module is not loaded" in r["extra"]["error"] for r in rows)
