"""Fixtures: real pyrepl daemons on loopback, in-process (threads) or as subprocesses.

In-process daemons use real sockets, real files and the real engine; only the process
boundary is missing, which the subprocess helpers add where kill -9 matters.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drorch.replication.base import Role
from drorch.replication.pyrepl.control import ControlClient, ControlUnreachable
from drorch.replication.pyrepl.daemon import Daemon, ServeOptions
from drorch.replication.pyrepl.engine_config import EngineConfig
from drorch.replication.pyrepl.tls import LinkTls
from tests.pyrepl.nbd_client import NbdClient

SIZE = 4 * 1024 * 1024
REGION = 64 * 1024
REPO = Path(__file__).resolve().parents[2]


def wait_until(what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Side:
    """One in-process daemon and handy accessors."""

    daemon: Daemon
    backing: Path
    control: Path

    def call(self, op: str, **args: Any) -> Any:
        return ControlClient(self.control).call(op, **args)

    def status(self) -> dict[str, Any]:
        return dict(self.call("status"))

    @property
    def engine(self) -> Any:
        return self.daemon.engine

    @property
    def nbd(self) -> tuple[str, int]:
        assert self.daemon.nbd is not None and self.daemon.nbd.bound_tcp is not None
        return self.daemon.nbd.bound_tcp

    def client(self) -> NbdClient:
        host, port = self.nbd
        return NbdClient(host, port, "vol")

    @property
    def listen(self) -> tuple[str, int]:
        bound = self.daemon.link.bound
        assert bound is not None
        return bound

    def content(self) -> bytes:
        return self.backing.read_bytes()


class Cluster:
    """Starts sides in tmp_path and stops every one of them at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sides: list[Side] = []

    def start(
        self,
        label: str,
        role: Role,
        *,
        mode: str = "sync",
        peer: tuple[str, int] | None = None,
        size: int = SIZE,
        tls: LinkTls | None = None,
        fencing: str = "dont-care",
        nbd_payload_timeout: float = 30.0,
        nbd_idle_evict: float | None = None,
        **engine: Any,
    ) -> Side:
        """`fencing` defaults to dont-care here: these sides test replication, resync,
        split brain and epochs with writes on a disconnected primary. The product's
        default (resource-only) is tested in test_pyrepl_fencing.py."""
        backing = self.root / f"{label}.img"
        control = self.root / f"{label}.ctl"
        config = EngineConfig(
            name="vol",
            backing=backing,
            size=size,
            mode=mode,
            role=role,
            region_size=REGION,
            fencing=fencing,
            **engine,
        )
        options = ServeOptions(
            engine=config,
            control=control,
            listen=("127.0.0.1", 0),
            peer=peer,
            nbd=("127.0.0.1", 0),
            tls=tls,
            nbd_payload_timeout=nbd_payload_timeout,
            **({} if nbd_idle_evict is None else {"nbd_idle_evict": nbd_idle_evict}),
        )
        daemon = Daemon(options)
        daemon.start()
        side = Side(daemon, backing, control)
        self.sides.append(side)
        return side

    def stop(self, side: Side) -> None:
        if side in self.sides:
            self.sides.remove(side)
            side.daemon.close()

    def pair(self, *, mode: str = "sync", **engine: Any) -> tuple[Side, Side]:
        """A connected, fully synced primary `a` and secondary `b` (`a` dials `b`)."""
        b = self.start("b", Role.SECONDARY, mode=mode, **engine)
        a = self.start("a", Role.PRIMARY, mode=mode, peer=b.listen, **engine)
        wait_until("initial sync", lambda: connected(a) and connected(b))
        return a, b

    def close(self) -> None:
        for side in reversed(self.sides):
            side.daemon.close()
        self.sides.clear()


def connected(side: Side) -> bool:
    """Connected and fully in sync as this side sees it (nothing queued, dirty, ahead)."""
    st = side.status()
    return (
        st["connection"] == "Connected"
        and st["disk"] == st["peer_disk"] == "UpToDate"
        and st["out_of_sync_bytes"] == 0
        and st["lag_bytes"] == 0
        and not st["extra"]["ahead"]
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


# ---------------------------------------------------------------------- subprocesses
class ServeProcess:
    """`python -m drorch repl serve ...` as a child process, stopped by PID."""

    def __init__(
        self,
        root: Path,
        label: str,
        role: str,
        mode: str,
        peer: str | None = None,
        size: str = "4MiB",
        listen: str = "127.0.0.1:0",
        extra: tuple[str, ...] = (),
    ) -> None:
        self.control = root / f"{label}.ctl"
        self.backing = root / f"{label}.img"
        self.log = root / f"{label}.log"
        argv = [
            sys.executable,
            "-m",
            "drorch",
            "repl",
            "serve",
            "--name",
            "vol",
            "--backing",
            str(self.backing),
            "--size",
            size,
            "--role",
            role,
            "--mode",
            mode,
            "--listen",
            listen,
            "--nbd",
            "127.0.0.1:0",
            "--control",
            str(self.control),
        ]
        if peer:
            argv += ["--peer", peer]
        argv += extra
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=log, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}
            )
        self.label = label

    def wait_ready(self) -> None:
        wait_until(f"{self.label} control socket", self._answers, timeout=20)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"serve exited {self.proc.returncode}: {self.log.read_text()}")
        try:
            ControlClient(self.control, timeout=2).call("status")
            return True
        except ControlUnreachable:
            return False

    def status(self) -> dict[str, Any]:
        return dict(ControlClient(self.control).call("status"))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "drorch", "repl", *args]
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )

    def status_json(self) -> dict[str, Any]:
        out = self.cli("status", "--control", str(self.control), "--format", "json")
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))

    @property
    def listen(self) -> str:
        return str(self.status()["listen"])

    @property
    def nbd(self) -> tuple[str, int]:
        uri = str(self.status()["nbd"])  # nbd://127.0.0.1:PORT/vol
        host, port = uri.removeprefix("nbd://").split("/")[0].rsplit(":", 1)
        return host, int(port)

    def terminate(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def start(
        label: str,
        role: str,
        mode: str = "sync",
        peer: str | None = None,
        size: str = "4MiB",
        listen: str = "127.0.0.1:0",
        extra: tuple[str, ...] = (),
    ) -> ServeProcess:
        proc = ServeProcess(tmp_path, label, role, mode, peer, size, listen, extra)
        started.append(proc)
        proc.wait_ready()
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.proc.poll() is None:
                os.kill(proc.proc.pid, signal.SIGKILL)
                proc.proc.wait(10)


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two ends of one TCP connection on loopback."""
    srv = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(srv.getsockname())
    b, _ = srv.accept()
    srv.close()
    yield a, b
    a.close()
    b.close()
