"""One convention for destructive commands (drorch.cli.flags): each takes --dry-run and
--yes; without --yes it asks on the terminal, and with no terminal (a script, a pipe,
cron) it asks nothing and stops, exit 1, nothing done. Every command is classified here,
so a new one cannot slip past the convention unnoticed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from drorch.cli.main import cli

# Change the cluster: stop, start, move, promote, demote, discard or overwrite.
DESTRUCTIVE = {
    "drbd adjust", "drbd create-md", "drbd disconnect", "drbd down", "drbd invalidate",
    "drbd primary", "drbd resolve", "drbd secondary",
    "repl promote", "repl demote", "repl resolve", "repl disconnect", "repl stop",
    "repl outdate-peer", "repl allow-two-primaries", "repl down", "repl set-mode",
    "watchdog test",
    "runbook abandon",
    "vm start", "vm shutdown", "vm destroy", "vm migrate", "vm failover-start",
    "migrate", "failover", "failback", "start", "runbook run", "drill run", "agent self-fence",
}  # fmt: skip
# Never ask: called by DRBD or pyrepl as handlers, long-running daemons, the simulated or
# namespace lab (no real cluster), only bringing things up / writing new files, or
# removing only a drill's own copies (drill cleanup).
EXEMPT = {
    "drbd fence-peer", "drbd unfence-peer", "repl fence-peer", "repl unfence-peer",
    "drbd up", "drbd connect", "drbd install", "drbd render", "repl up", "repl connect",
    "repl forbid-two-primaries", "repl serve", "agent run", "quorumd", "scheduler run",
    "metrics serve", "metrics textfile", "maintenance", "quorum certs", "runbook resume",
    "vm sync-xml", "drill cleanup",
}  # fmt: skip
LAB = ("lab ", "sim ")  # the simulated world and the namespace lab


def _leaves(cmd: click.Command, path: tuple[str, ...] = ()) -> dict[str, click.Command]:
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        out: dict[str, click.Command] = {}
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None
            out |= _leaves(sub, (*path, name))
        return out
    return {" ".join(path): cmd}


ALL = _leaves(cli)


def _params(cmd: click.Command) -> set[str]:
    return {p.name for p in cmd.params if p.name}


def test_every_command_is_classified() -> None:
    read_only = {n for n, c in ALL.items() if "fmt" in _params(c)}
    unclassified = {n for n in ALL if not n.startswith(LAB)} - DESTRUCTIVE - EXEMPT - read_only
    assert unclassified == set(), "classify these commands in this test"
    assert not (DESTRUCTIVE | EXEMPT) - set(ALL), "names that are no command"


@pytest.mark.parametrize("name", sorted(DESTRUCTIVE))
def test_destructive_commands_take_dry_run_and_yes(name: str) -> None:
    params = _params(ALL[name])
    assert {"dry_run", "yes"} <= params, f"drorch {name}: {sorted(params)}"


def _web(config: Path) -> str:
    out = CliRunner().invoke(cli, ["vm", "list", "-c", str(config), "--format", "json"]).stdout
    return str(next(r for r in json.loads(out) if r["vm"] == "web")["A"])


def test_no_terminal_no_yes_nothing_done(lab_config: Path) -> None:
    """A piped "y" is not a confirmation: without a TTY only --yes goes ahead."""
    c = str(lab_config)
    for args in (
        ["vm", "destroy", "web", "--site", "A", "-c", c],
        ["vm", "shutdown", "web", "--site", "A", "-c", c],
        ["vm", "migrate", "web", "--to", "B", "-c", c, "--force", "--accept-data-loss"],
    ):
        r = CliRunner().invoke(cli, args, input="y\n")
        assert r.exit_code in (1, 3), r.output  # migrate: refused (exit 3) before asking
        if r.exit_code == 1:
            assert "not confirmed (no terminal to ask on)" in r.stderr
            assert "--yes goes ahead without asking" in r.stderr
        assert _web(lab_config) == "running"
    done = CliRunner().invoke(cli, ["vm", "destroy", "web", "--site", "A", "-c", c, "--yes"])
    assert done.exit_code == 0 and _web(lab_config) == "shutoff"


def _on_a_terminal(args: list[str], answer: bytes) -> tuple[int, str]:
    """Run drorch with a pseudo-terminal as stdin, answer the prompt, return (code, out)."""
    leader, follower = os.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "drorch", *args],
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        os.close(follower)
        time.sleep(0.2)
        os.write(leader, answer)
        out, _ = proc.communicate(timeout=60)
        return proc.returncode, out.decode()
    finally:
        os.close(leader)


def test_on_a_terminal_it_asks_and_takes_the_answer(lab_config: Path) -> None:
    c = str(lab_config)
    code, out = _on_a_terminal(["vm", "destroy", "web", "--site", "A", "-c", c], b"n\n")
    assert code == 1 and "Power off web at site A (running) without shutdown? [y/N]" in out
    assert "not confirmed; nothing done" in out and _web(lab_config) == "running"
    code, out = _on_a_terminal(["vm", "destroy", "web", "--site", "A", "-c", c], b"y\n")
    assert code == 0 and "web: powered off at site A" in out, out
    assert _web(lab_config) == "shutoff"


def test_self_fence_asks_a_person_but_not_the_watchdog(lab_config: Path) -> None:
    """The soft watchdog runs `agent self-fence ... --yes`; typed by hand it asks."""
    from drorch.agent.daemon import self_fence_argv

    c = str(lab_config)
    dry = CliRunner().invoke(cli, ["agent", "self-fence", "-c", c, "--node", "a1", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith("would stop writing on a1: volume appdata, volume dbdata")
    unasked = CliRunner().invoke(cli, ["agent", "self-fence", "-c", c, "--node", "a1"])
    assert unasked.exit_code == 1 and "not confirmed (no terminal to ask on)" in unasked.stderr
    assert _web(lab_config) == "running"
    argv = self_fence_argv(lab_config, "a1")
    assert argv[1:5] == ["-m", "drorch", "agent", "self-fence"]
    done = CliRunner().invoke(cli, argv[3:])  # as the watchdog runs it: no terminal
    assert done.exit_code == 0 and "vm web destroyed" in done.stdout, done.output
    assert _web(lab_config) == "shutoff"


def test_abandon_asks_and_its_dry_run_changes_nothing() -> None:
    from drorch.runbook.journal import RUNNING, Journal, RunRecord
    from drorch.statedir import default_state_dir

    run_id = "20261203T000000Z-dead"
    journal = Journal(default_state_dir())
    journal.create_run(RunRecord(
        run_id, "hq-dr", "hurricane-planned-migration", "x.yaml", "", "c.yaml", {}, False,
        "root", "vm", 1, time.time(), None, RUNNING, "",
    ))  # fmt: skip

    def status() -> str:
        record = journal.run(run_id)
        assert record is not None
        return record.status

    dry = CliRunner().invoke(cli, ["runbook", "abandon", run_id, "--dry-run"])
    assert dry.exit_code == 0 and dry.stdout.startswith(f"would abandon run {run_id}")
    unasked = CliRunner().invoke(cli, ["runbook", "abandon", run_id])
    assert unasked.exit_code == 1 and "not confirmed (no terminal to ask on)" in unasked.stderr
    assert status() == RUNNING
    done = CliRunner().invoke(cli, ["runbook", "abandon", run_id, "--yes"])
    assert done.exit_code == 0 and status() == "abandoned"
    journal.close()
