"""LocalRunner against real processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from drorch.remote.base import CommandFailed, CommandTimeout, RunnerError
from drorch.remote.local import LocalRunner


def _alive(pid: int) -> bool:
    """True while `pid` runs; a killed orphan may linger as a zombie until reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_dead(pid: int) -> bool:
    for _ in range(50):  # bounded: at most ~1 s
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_run_captures_stdout_stderr_and_status() -> None:
    result = LocalRunner().run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert result.argv == ("sh", "-c", "echo out; echo err >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.ok


def test_run_passes_stdin() -> None:
    result = LocalRunner().run(["cat"], input="héllo\n")
    assert result.stdout == "héllo\n"
    assert result.ok


def test_argv_is_not_shell_interpreted() -> None:
    result = LocalRunner().run(["echo", "$HOME; rm -rf /"])
    assert result.stdout == "$HOME; rm -rf /\n"


def test_check_raises_command_failed_with_stderr() -> None:
    with pytest.raises(CommandFailed, match=r"false exited 1") as info:
        LocalRunner().run(["false"], check=True)
    assert info.value.result.returncode == 1


def test_missing_program_is_a_runner_error() -> None:
    with pytest.raises(RunnerError, match="no-such-program-xyz: command not found"):
        LocalRunner().run(["no-such-program-xyz"])


def test_empty_argv_is_refused() -> None:
    with pytest.raises(ValueError, match="empty command"):
        LocalRunner().run([])


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # the shell starts a grandchild and records its pid; both must die
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    with pytest.raises(CommandTimeout, match=r"did not finish within 0\.5s and was killed"):
        LocalRunner().run(["sh", "-c", script], timeout=0.5)
    grandchild = int(pidfile.read_text())
    assert _wait_dead(grandchild)


def test_env_and_cwd_are_applied(tmp_path: Path) -> None:
    runner = LocalRunner(env={"DRORCH_TEST_VAR": "site-a"}, cwd=tmp_path)
    result = runner.run(["sh", "-c", 'echo "$DRORCH_TEST_VAR $(pwd)"'])
    assert result.stdout.strip() == f"site-a {tmp_path}"
    assert "PATH" in os.environ  # inherited environment still there (sh was found)


def test_stream_yields_lines_in_order() -> None:
    lines = list(LocalRunner().stream(["sh", "-c", "printf 'a\\nb\\nlast-without-newline'"]))
    assert lines == ["a", "b", "last-without-newline"]


def test_stream_many_lines_with_chatty_stderr() -> None:
    script = "i=0; while [ $i -lt 3000 ]; do echo line$i; echo noise$i >&2; i=$((i+1)); done"
    lines = list(LocalRunner().stream(["sh", "-c", script], timeout=20))
    assert len(lines) == 3000
    assert lines[0] == "line0" and lines[-1] == "line2999"


def test_stream_nonzero_exit_raises_with_stderr() -> None:
    gen = LocalRunner().stream(["sh", "-c", "echo one; echo broken >&2; exit 4"])
    assert next(gen) == "one"
    with pytest.raises(CommandFailed, match="exited 4: broken"):
        next(gen)


def test_stream_timeout_kills_command() -> None:
    gen = LocalRunner().stream(["sh", "-c", "echo first; exec sleep 30"], timeout=0.5)
    assert next(gen) == "first"
    with pytest.raises(CommandTimeout, match=r"still running after 0\.5s"):
        next(gen)


def test_closing_stream_kills_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    gen = LocalRunner().stream(["sh", "-c", f"echo $$ > {pidfile}; echo ready; exec sleep 30"])
    assert next(gen) == "ready"
    pid = int(pidfile.read_text())
    gen.close()
    assert _wait_dead(pid)
