"""`drorch repl serve` that cannot start names the real cause (it used to print
`file descriptor cannot be a negative integer (-1)` from a second close)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port


@pytest.fixture
def busy_port() -> Iterator[int]:
    s = socket.create_server(("127.0.0.1", 0))
    yield int(s.getsockname()[1])
    s.close()


def _serve(tmp: Path, *, listen: str, nbd: str | None = None, control: Path | None = None) -> str:
    argv = [
        sys.executable, "-m", "drorch", "repl", "serve", "--name", "vol",
        "--backing", str(tmp / "v.img"), "--size", "1MiB", "--role", "secondary",
        "--mode", "sync", "--listen", listen, "--control", str(control or tmp / "v.ctl"),
    ]  # fmt: skip
    if nbd:
        argv += ["--nbd", nbd]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0, done.stderr
    assert "negative integer" not in done.stderr and "Traceback" not in done.stderr
    return done.stderr


def test_port_in_use(tmp_path: Path, busy_port: int) -> None:
    err = _serve(tmp_path, listen=f"127.0.0.1:{busy_port}")
    assert f"cannot start the replication listener on 127.0.0.1:{busy_port}" in err
    assert "Address already in use" in err


def test_listen_equal_to_nbd(tmp_path: Path) -> None:
    port = free_port()
    err = _serve(tmp_path, listen=f"127.0.0.1:{port}", nbd=f"127.0.0.1:{port}")
    assert "drorch: error: --listen and --nbd are the same address" in err  # before binding


def test_missing_control_directory(tmp_path: Path) -> None:
    ctl = tmp_path / "no" / "such" / "dir" / "v.ctl"
    err = _serve(tmp_path, listen=f"127.0.0.1:{free_port()}", control=ctl)
    assert f"cannot start the control socket {ctl}" in err


def test_socket_path_too_long(tmp_path: Path) -> None:
    ctl = tmp_path / ("x" * 120) / "v.ctl"
    ctl.parent.mkdir()
    err = _serve(tmp_path, listen=f"127.0.0.1:{free_port()}", control=ctl)
    assert "cannot start the control socket" in err
