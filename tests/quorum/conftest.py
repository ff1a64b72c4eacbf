"""Quorum fixtures: a PKI of self-signed certificates, configs, and real daemons on loopback
(in-process on a thread for speed, or `drorch quorumd` subprocesses where restarts, signals
and exit codes matter)."""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drorch.clock import SystemClock
from drorch.quorum.client import QuorumConnection
from drorch.quorum.daemon import load_validated, open_state
from drorch.quorum.server import QuorumServer
from drorch.quorum.tls import generate_self_signed
from tests.ports import free_port

NAMES = ("server", "c1-a", "c1-b", "c2-a", "c2-b", "stranger")
HEARTBEAT_MS, LEASE_MS, SWITCH_DELAY_MS = 100, 600, 400


@dataclass
class Pki:
    folder: Path
    fingerprints: dict[str, str] = field(default_factory=dict)

    def cert(self, name: str) -> Path:
        return self.folder / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.folder / f"{name}.key"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    out = Pki(folder)
    for name in NAMES:
        out.fingerprints[name] = generate_self_signed(name, folder)[2]
    return out


def config_text(
    pki: Pki,
    port: int,
    heartbeat_ms: int = HEARTBEAT_MS,
    lease_ms: int = LEASE_MS,
    switch_delay_ms: int = SWITCH_DELAY_MS,
    extra: str = "",
) -> str:
    d = pki.folder
    return (
        f"listen: 127.0.0.1:{port}\n"
        f"cert: {d}/server.crt\n"
        f"key: {d}/server.key\n"
        "state_file: quorumd.state\n"
        f"heartbeat_ms: {heartbeat_ms}\n"
        f"lease_ms: {lease_ms}\n"
        f"switch_delay_ms: {switch_delay_ms}\n"
        f"{extra}"
        "clusters:\n"
        "  c1:\n"
        "    sites:\n"
        f"      A: [{d}/c1-a.crt]\n"
        f"      B: [{d}/c1-b.crt]\n"
        "  c2:\n"
        "    sites:\n"
        f"      A: [{d}/c2-a.crt]\n"
        f"      B: [{d}/c2-b.crt]\n"
    )


@dataclass
class Witness:
    """A running daemon and how to talk to it."""

    pki: Pki
    port: int
    config: Path

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def state_file(self) -> Path:
        return self.config.parent / "quorumd.state"

    def connect(
        self, cluster: str = "c1", site: str = "A", node: str = "n1", cert: str = ""
    ) -> QuorumConnection:
        name = cert or f"{cluster}-{site.lower()}"
        conn = QuorumConnection(
            self.server,
            self.pki.fingerprints["server"],
            self.pki.cert(name),
            self.pki.key(name),
            cluster,
            site,
            node,
            timeout=5.0,
        )
        conn.connect()
        return conn


class InProcessWitness(Witness):
    """A QuorumServer on its own event loop thread; stop() persists like SIGTERM does."""

    def __init__(self, pki: Pki, port: int, config: Path, init: bool = True) -> None:
        super().__init__(pki, port, config)
        cfg, ctx = load_validated(config)
        state, grants = open_state(cfg, init, SystemClock())
        self.quorum_server = QuorumServer(cfg, ctx, grants, state, SystemClock())
        self.quorum_server.bind()
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        ready = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def main() -> None:
                self._stop = asyncio.Event()
                ready.set()
                await self.quorum_server.serve(self._stop)

            try:
                self.loop.run_until_complete(main())
            except BaseException as exc:  # reported by stop()
                self.error = exc
            finally:
                self.loop.run_until_complete(self.loop.shutdown_default_executor())
                self.loop.close()

        self.thread = threading.Thread(target=run, name="quorumd-test", daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        if self.thread.is_alive():
            assert self._stop is not None
            self.loop.call_soon_threadsafe(self._stop.set)
            self.thread.join(10)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


@pytest.fixture
def make_config(pki: Pki, tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(**kwargs: object) -> tuple[Path, int]:
        port = free_port()
        path = tmp_path / "quorumd.yaml"
        path.write_text(config_text(pki, port, **kwargs))  # type: ignore[arg-type]
        return path, port

    return make


@pytest.fixture
def witness(pki: Pki, make_config) -> Iterator[InProcessWitness]:  # type: ignore[no-untyped-def]
    path, port = make_config()
    w = InProcessWitness(pki, port, path, init=True)
    try:
        yield w
    finally:
        w.stop()


class DaemonProcess(Witness):
    """`drorch quorumd` as a subprocess; stderr goes to a log file we can read."""

    def __init__(
        self,
        pki: Pki,
        port: int,
        config: Path,
        init: bool = False,
        extra: tuple[str, ...] = (),
        fd_limit: int | None = None,
    ) -> None:
        super().__init__(pki, port, config)
        self.log = config.parent / f"quorumd-{time.monotonic_ns()}.log"
        args = [sys.executable, "-m", "drorch", "quorumd", "--config", str(config), *extra]
        if init:
            args.append("--init")
        self._log_fh = self.log.open("wb")
        self.started_at = time.monotonic()  # the daemon reads its state after this

        def limit_fds() -> None:  # in the child, before exec: soft and hard limit
            if fd_limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

        self.proc = subprocess.Popen(
            args, stderr=self._log_fh, stdout=subprocess.DEVNULL, preexec_fn=limit_fds
        )

    def wait_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.stderr()}")
            if "serving " in self.stderr():
                return
            time.sleep(0.05)
        raise AssertionError(f"daemon did not start: {self.stderr()}")

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def wait(self, timeout: float = 15.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log_fh.close()


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Every daemon a test starts is appended here and killed (by PID) at teardown."""
    started: list[DaemonProcess] = []
    try:
        yield started
    finally:
        for d in started:
            d.close()


def drorch_cli() -> list[str]:
    exe = shutil.which("drorch", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "drorch"]


def environ() -> dict[str, str]:
    return dict(os.environ)
