"""One owner per replica: a second `repl serve` on the same backing file, metadata or
control socket is refused with a clear message, and the first keeps serving."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from drorch.replication.base import Role
from drorch.replication.pyrepl.control import ControlClient
from tests.ports import free_port
from tests.pyrepl.conftest import Cluster, wait_until


def _second(
    backing: Path, control: Path, meta: Path | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable, "-m", "drorch", "repl", "serve", "--name", "vol",
        "--backing", str(backing), "--size", "1MiB", "--role", "secondary", "--mode", "sync",
        "--listen", f"127.0.0.1:{free_port()}", "--control", str(control),
    ]  # fmt: skip
    if meta is not None:
        argv += ["--meta", str(meta)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def _still_serving(cluster: Cluster) -> None:
    side = cluster.sides[0]
    assert side.status()["role"] == "primary"  # its control socket still answers
    data = os.urandom(4096)
    with side.client() as c:  # and its NBD export still serves
        c.write(8192, data, fua=True)
        assert c.read(8192, 4096) == data
    assert side.content()[8192 : 8192 + 4096] == data


def test_second_daemon_on_same_replica_refused(cluster: Cluster, tmp_path: Path) -> None:
    first = cluster.start("a", Role.PRIMARY, size=1 << 20)
    done = _second(first.backing, tmp_path / "other.ctl")
    assert done.returncode == 1
    assert "is in use by another pyrepl daemon" in done.stderr and "Traceback" not in done.stderr
    assert f"(pid {os.getpid()})" in done.stderr
    assert not (tmp_path / "other.ctl").exists()
    _still_serving(cluster)


def test_second_daemon_on_same_backing_other_meta_refused(cluster: Cluster, tmp_path: Path) -> None:
    first = cluster.start("a", Role.PRIMARY, size=1 << 20)
    done = _second(first.backing, tmp_path / "other.ctl", meta=tmp_path / "elsewhere.meta")
    assert done.returncode == 1
    assert f"the backing file {first.backing} is in use" in done.stderr
    _still_serving(cluster)


def test_second_daemon_on_same_control_socket_refused(cluster: Cluster, tmp_path: Path) -> None:
    first = cluster.start("a", Role.PRIMARY, size=1 << 20)
    done = _second(tmp_path / "other.img", first.control)
    assert done.returncode == 1
    assert f"cannot start the control socket {first.control}" in done.stderr
    assert "in use by a running pyrepl daemon" in done.stderr
    assert first.control.is_socket(), "the second daemon deleted the first one's socket"
    _still_serving(cluster)


def test_stale_control_socket_is_replaced(tmp_path: Path) -> None:
    stale = tmp_path / "v.ctl"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # a crashed daemon's socket file: nobody answers
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "drorch",
            "repl",
            "serve",
            "--name",
            "vol",
            "--backing",
            str(tmp_path / "v.img"),
            "--size",
            "1MiB",
            "--role",
            "secondary",
            "--mode",
            "sync",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--control",
            str(stale),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until("serving", lambda: _answers(ControlClient, stale))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


def _answers(client: type, path: Path) -> bool:
    try:
        return bool(client(path, timeout=2).call("status"))
    except Exception:
        return False
