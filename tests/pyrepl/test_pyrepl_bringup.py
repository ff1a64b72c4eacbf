"""`drorch repl up|down -c CONFIG`: real config-driven pyrepl daemons on loopback.

Day 0 is allowed only when provably day 0 (both copies fresh, never primary); a second
`up` changes nothing; a copy that holds data is not made the source without --force
--accept-data-loss; `down` refuses a primary unless --demote.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from drorch.cli.main import cli
from drorch.replication.pyrepl.control_path import replica_control_path
from tests.ports import free_port_block
from tests.pyrepl.test_pyrepl_resolve_site import CONFIG


def _run(*argv: str) -> Result:
    return CliRunner().invoke(cli, list(argv), catch_exceptions=False)


def _rows(result: Result) -> dict[str, dict[str, str]]:
    start = result.stdout.index("[")
    return {r["node"]: r for r in json.loads(result.stdout[start:])}


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "cluster.yaml"
    path.write_text(CONFIG.format(port=free_port_block(2), nbd_port=free_port_block(2)))
    yield path
    # stop what the test started, by the pids the daemons report
    for node in ("a1", "b1"):
        ctl = replica_control_path(tmp_path, "vol", node)
        if not ctl.exists():
            continue
        from drorch.replication.pyrepl.control import ControlClient, ControlUnreachable

        with contextlib.suppress(ControlUnreachable, ProcessLookupError, KeyError):
            pid = int(ControlClient(ctl).call("status")["pid"])
            os.kill(pid, signal.SIGKILL)


def test_up_day0_then_idempotent_then_down(config: Path) -> None:
    first = _run("repl", "up", "-c", str(config), "--initial-primary", "A", "--format", "json")
    assert first.exit_code == 0, first.output
    rows = _rows(first)
    assert rows["a1"]["action"] == "started, day-0 primary"
    assert rows["a1"]["role"] == "primary"
    assert rows["b1"]["action"] == "started"

    again = _run("repl", "up", "-c", str(config), "--format", "json")
    assert again.exit_code == 0, again.output
    assert {r["action"] for r in _rows(again).values()} == {"already up"}
    assert _rows(again)["a1"]["connection"] == "Connected"

    # the primary is not stopped behind the operator's back
    dry = _run("repl", "down", "-c", str(config), "--format", "json", "--dry-run")
    assert dry.exit_code == 1 and "vol is primary at a1: demote it first" in dry.stderr
    assert _rows(dry)["b1"]["action"] == "would stop"
    unasked = _run("repl", "down", "-c", str(config), "--format", "json")
    assert unasked.exit_code == 1 and "not confirmed (no terminal to ask on)" in unasked.stderr
    assert _rows(_run("repl", "up", "-c", str(config), "--format", "json"))["b1"]["action"] == (
        "already up"
    )
    refused = _run("repl", "down", "-c", str(config), "--format", "json", "--yes")
    assert refused.exit_code == 1
    assert "vol is primary at a1: demote it first" in refused.stderr
    assert _rows(refused)["b1"]["action"] == "stopped"

    from drorch.replication.pyrepl.control import ControlClient

    ctl = replica_control_path(config.parent, "vol", "a1")
    pid = int(ControlClient(ctl).call("status")["pid"])
    done = _run("repl", "down", "-c", str(config), "--demote", "--format", "json", "--yes")
    assert done.exit_code == 0, done.output
    assert _rows(done)["a1"]["action"] == "stopped"
    # down returns only once the daemon's process is gone (or a zombie awaiting its parent)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z"), state


def test_day0_refused_once_a_copy_holds_data(config: Path) -> None:
    assert _run("repl", "up", "-c", str(config), "--initial-primary", "A").exit_code == 0
    assert _run("repl", "down", "-c", str(config), "--demote", "--yes").exit_code == 0
    # both copies now have history (epoch > 0, UpToDate): B as the "day-0" source would
    # overwrite A's data
    refused = _run("repl", "up", "-c", str(config), "--initial-primary", "B")
    assert refused.exit_code == 3, refused.output
    assert "not day 0" in refused.stderr
    assert "--force --accept-data-loss" in refused.stderr
    forced = _run(
        "repl", "up", "-c", str(config), "--initial-primary", "B",
        "--force", "--accept-data-loss", "--format", "json",
    )  # fmt: skip
    assert forced.exit_code == 0, forced.output
    assert _rows(forced)["b1"]["role"] == "primary"


def test_unknown_volume_and_site_are_usage_errors(config: Path) -> None:
    bad = _run("repl", "up", "-c", str(config), "--volume", "nope")
    assert bad.exit_code == 2
    assert "no volume nope" in bad.stderr
    site = _run("repl", "up", "-c", str(config), "--initial-primary", "Z")
    assert site.exit_code == 2
    assert "no site 'Z'" in site.stderr


def test_a_daemon_that_cannot_start_says_why(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a backing file in a folder that does not exist: the daemon exits at once with its
    # own error, and `up` passes it on instead of only naming the log
    import drorch.replication.pyrepl.driver as driver

    monkeypatch.setattr(driver, "UP_WAIT", 3.0)
    config.write_text(config.read_text().replace("a1: a.img", "a1: no-such-dir/a.img"))
    result = _run("repl", "up", "-c", str(config), "--initial-primary", "A")
    assert result.exit_code == 1, result.output
    assert "drorch: error: pyrepl daemon for vol did not start: [Errno 2]" in result.stderr
    assert "No such file or directory" in result.stderr
    assert "no-such-dir/a.img" in result.stderr
    assert "Traceback" not in result.output
