"""Fixtures of the DRBD driver tests: recorded-format drbdsetup/drbdadm output files."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@dataclass
class FakeDrbdSshd:
    """A private sshd on 127.0.0.1 whose sessions find the fake drbdadm/drbdsetup first
    on PATH (sshd's SetEnv): a remote DRBD node, reached through the real SSHRunner."""

    target: str
    client_key: Path
    known_hosts: Path
    log: Path  # every fake drbdadm/drbdsetup call, one per line
    state_file: Path  # the fixture state the fake drbdsetup prints
    state_dir: Path  # DRORCH_DRBD_STATE_DIR for the epoch file on the "remote" node
    fail_file: Path  # "FIXTURE RC": the fake drbdadm fails with that fixture's stderr


@pytest.fixture(scope="module")
def drbd_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeDrbdSshd]:
    from tests.drbd.fakebin import install_fake_drbd
    from tests.sshd_server import private_sshd

    d = tmp_path_factory.mktemp("drbd-sshd")
    bin_dir = install_fake_drbd(d / "bin")
    log, state_file = d / "calls.log", d / "state"
    state_file.write_text("connected-secondary")
    env = (
        f"SetEnv PATH={bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin DRBD_FAKE_LOG={log}"
        f" DRBD_FAKE_STATE_FILE={state_file} DRBD_FAKE_FAIL_FILE={d / 'fail'}\n"
    )
    with private_sshd(d, extra_config=env) as server:
        yield FakeDrbdSshd(
            server.target,
            server.client_key,
            server.known_hosts,
            log,
            state_file,
            d / "st",
            d / "fail",
        )


@dataclass
class QuorumDaemon:
    """A real `drorch quorumd` subprocess on 127.0.0.1 for cluster c1 (sites A and B)."""

    port: int
    folder: Path
    fingerprint: str  # the server's pinned certificate

    def cert(self, site: str) -> Path:
        return self.folder / f"c1-{site.lower()}.crt"

    def key(self, site: str) -> Path:
        return self.folder / f"c1-{site.lower()}.key"


@pytest.fixture
def quorum_daemon(tmp_path: Path) -> Iterator[QuorumDaemon]:
    import socket
    import sys
    import time

    from drorch.quorum.tls import generate_self_signed
    from tests.ports import free_port

    folder = tmp_path / "quorumd"
    folder.mkdir()
    fingerprint = generate_self_signed("server", folder)[2]
    for name in ("c1-a", "c1-b"):
        generate_self_signed(name, folder)
    port = free_port()
    config = folder / "quorumd.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\ncert: server.crt\nkey: server.key\n"
        "state_file: quorumd.state\nheartbeat_ms: 1000\nlease_ms: 30000\nswitch_delay_ms: 500\n"
        "clusters:\n  c1:\n    sites:\n      A: [c1-a.crt]\n      B: [c1-b.crt]\n"
    )
    log = (folder / "quorumd.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "drorch", "quorumd", "--config", str(config), "--init"],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        for _ in range(200):  # bounded: at most ~20 s (first start imports and binds)
            if proc.poll() is not None:
                raise RuntimeError((folder / "quorumd.log").read_text())
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"quorumd did not listen on {port}")
        yield QuorumDaemon(port, folder, fingerprint)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
