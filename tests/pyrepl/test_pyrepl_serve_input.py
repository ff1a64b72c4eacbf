"""`repl serve` refuses bad input at start, every problem at once, exit 2, no traceback,
and nothing is created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _serve(
    tmp: Path, *extra: str, size: str = "1MiB", name: str = "vol"
) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable, "-m", "drorch", "repl", "serve", "--name", name,
        "--backing", str(tmp / "v.img"), "--size", size, "--role", "secondary",
        "--mode", "sync", "--listen", "127.0.0.1:17789", "--control", str(tmp / "v.ctl"),
        *extra,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("kwargs", "extra", "message"),
    [
        ({"size": "0"}, (), "--size must be at least one byte"),
        ({"size": "1.5"}, (), "'1.5' is not a whole number of bytes"),
        ({"name": ""}, (), "--name must not be empty"),
        ({}, ("--peer", "127.0.0.1:17789"), "--listen and --peer are the same address"),
        (
            {"size": "64KiB"},
            ("--region-size", "1MiB"),
            "--region-size 1048576 is larger than the volume",
        ),
        ({}, ("--region-size", "5000"), "--region-size 5000 must be a power of two"),
        ({}, ("--mode", "async", "--max-lag", "0"), "--max-lag must be positive"),
    ],
)
def test_bad_input_refused(
    tmp_path: Path, kwargs: dict[str, str], extra: tuple[str, ...], message: str
) -> None:
    done = _serve(tmp_path, *extra, **kwargs)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "v.img").exists(), "a refused start created the backing file"


def test_backing_larger_than_size_refused(tmp_path: Path) -> None:
    (tmp_path / "v.img").write_bytes(b"\1" * (2 << 20))
    done = _serve(tmp_path)
    assert done.returncode == 2
    assert "holds 2097152 bytes, more than --size 1048576" in done.stderr
    assert (tmp_path / "v.img").stat().st_size == 2 << 20  # untouched


def test_every_problem_at_once(tmp_path: Path) -> None:
    done = _serve(tmp_path, "--peer", "127.0.0.1:17789", size="0", name="")
    assert done.returncode == 2
    assert done.stderr.count("drorch: error:") == 3


@pytest.mark.parametrize("op", ["demote", "connect", "disconnect", "verify", "stop"])
@pytest.mark.parametrize("option", [("--epoch", "3"), ("--force",), ("--accept-data-loss",)])
def test_options_without_effect_are_not_offered(
    tmp_path: Path, op: str, option: tuple[str, ...]
) -> None:
    """Only promote takes a fencing epoch or a data-safety override; elsewhere the option
    is a usage error (exit 2), not silently ignored."""
    argv = [sys.executable, "-m", "drorch", "repl", op, "--control", str(tmp_path / "x.ctl")]
    out = subprocess.run([*argv, *option], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out.stderr
    assert f"No such option '{option[0]}'" in out.stderr
    assert "Traceback" not in out.stderr
    helptext = subprocess.run([*argv[:5], "--help"], capture_output=True, text=True, timeout=30)
    assert option[0] not in helptext.stdout


def test_promote_still_takes_epoch_and_force(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "drorch", "repl", "promote", "--help"]
    helptext = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    assert "--epoch" in helptext and "--force" in helptext and "--accept-data-loss" in helptext
