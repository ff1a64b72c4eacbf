"""A config path that is not a regular file of bounded size fails at once, never hangs
and never reads without bound: a named pipe (no writer: a blocking open would wait
forever), a directory, /dev/zero (endless), a huge (sparse) file. Each command that reads
a config is run as a subprocess under a timeout: a hang fails the test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

TIMEOUT = 30.0  # generous for a loaded machine; a hang is forever
FAST = 10.0  # what "at once" must stay under, even on a loaded machine


def _fifo(tmp: Path) -> tuple[Path, str]:
    path = tmp / "cluster.fifo"
    os.mkfifo(path)
    return path, "file: cannot read: a named pipe (FIFO), not "


def _directory(tmp: Path) -> tuple[Path, str]:
    path = tmp / "cluster.d"
    path.mkdir()
    return path, "file: cannot read: a directory, not "


def _dev_zero(tmp: Path) -> tuple[Path, str]:
    return Path("/dev/zero"), "file: cannot read: a character device, not "


def _huge(tmp: Path) -> tuple[Path, str]:
    path = tmp / "huge.yaml"
    with open(path, "wb") as f:
        f.truncate(8 * 2**30)  # 8 GiB, sparse: reading it would take minutes and memory
    return path, "file-too-large: 8,589,934,592 bytes, larger than the 4,194,304 allowed"


KINDS: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "fifo": _fifo,
    "directory": _directory,
    "dev-zero": _dev_zero,
    "huge": _huge,
}
COMMANDS: dict[str, Callable[[str], list[str]]] = {
    "config validate": lambda p: ["config", "validate", "-c", p],
    "status": lambda p: ["status", "-c", p],
    "plan failover": lambda p: ["plan", "failover", "--to", "B", "-c", p],
    "vm list": lambda p: ["vm", "list", "-c", p],
    "quorumd": lambda p: ["quorumd", "--config", p],
    "runbook validate": lambda p: ["runbook", "validate", p],
}


def drorch(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, float]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "drorch", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,  # TimeoutExpired: drorch hung on the file
        stdin=subprocess.DEVNULL,
        env=env,
        check=False,
    )
    # `config validate` reports on stdout (its output is the report), the others on stderr
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_config_that_is_not_a_regular_file_fails_at_once(
    kind: str, command: str, tmp_path: Path
) -> None:
    path, message = KINDS[kind](tmp_path)
    code, err, took = drorch(COMMANDS[command](str(path)))
    assert code == 2, err
    [first, *_] = err.splitlines()
    assert first.startswith(f"{path}:1:1: {message}"), err
    assert "Traceback" not in err
    assert took < FAST, f"took {took:.1f} s"


def test_drorch_config_from_the_environment_too(tmp_path: Path) -> None:
    path, message = _fifo(tmp_path)
    env = dict(os.environ, DRORCH_CONFIG=str(path))
    code, err, _ = drorch(["status"], env=env)
    assert code == 2 and err.startswith(f"{path}:1:1: {message}a cluster file"), err


def test_the_size_limit_is_configurable(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("cluster: x\n" + "# padding\n" * 200)
    env = dict(os.environ, DRORCH_CONFIG_MAX_BYTES="1000")
    code, err, _ = drorch(["config", "validate", "-c", str(path)], env=env)
    assert code == 2 and "larger than the 1,000 allowed" in err, err
