"""Positive fencing through the real `fence_virsh` (Debian's fence-agents) over a real
private sshd on loopback. The hypervisor behind it is a stand-in: a small script in
place of `virsh` (fence_virsh's `sudo_path` prefix), keeping the domain's state in a
file. A real libvirtd per site runs only in the lab (tests/virt_lab); here it would cost
its QEMU probe on every test. What is real: the agent's stdin protocol, its ssh login and
prompt handling, its off-then-poll-status logic and its exit codes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest

from drorch.fencing.fence_agent import fence_off
from drorch.model.types import FenceAgent
from tests.sshd_server import Sshd, private_sshd

STANDIN = """#!/bin/sh
# stand-in for virsh: called as `STANDIN virsh COMMAND ARGS`
dir=$(dirname "$0")
shift
[ -e "$dir/hang" ] && sleep 30
case "$1" in
  domstate) cat "$dir/state" ;;
  destroy) [ -e "$dir/stuck" ] || echo "shut off" > "$dir/state"; echo "Domain '$2' destroyed" ;;
  start) echo running > "$dir/state" ;;
  list) echo " Id   Name        State"; echo "----------------------"
        echo " 1    drorch-db   $(cat "$dir/state")" ;;
  *) echo "error: unknown command $1"; exit 1 ;;
esac
"""


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with private_sshd(tmp_path_factory.mktemp("sshd")) as s:
        yield s


@pytest.fixture
def hypervisor(tmp_path: Path) -> Path:
    d = tmp_path / "hv"
    d.mkdir()
    (d / "standin").write_text(STANDIN)
    (d / "standin").chmod(0o755)
    (d / "state").write_text("running\n")
    return d


def _spec(sshd: Sshd, hv: Path, timeout: float = 20.0) -> FenceAgent:
    if shutil.which("fence_virsh") is None:
        pytest.fail("fence_virsh missing: install fence-agents (tests/system-packages.txt)")
    return FenceAgent(
        "fence_virsh",
        MappingProxyType(
            {
                "ip": "127.0.0.1",
                "ipport": str(sshd.port),
                "username": sshd.user,
                "identity_file": str(sshd.client_key),
                "ssh_path": f"/usr/bin/ssh -o UserKnownHostsFile={sshd.known_hosts}",
                "plug": "drorch-db",
                "use_sudo": "1",
                "sudo_path": str(hv / "standin"),
                "power_timeout": "2",
                "login_timeout": "5",
            }
        ),
        timeout,
    )


def test_confirmed_off(sshd: Sshd, hypervisor: Path) -> None:
    r = fence_off(_spec(sshd, hypervisor), "A")
    assert r.confirmed, r.reason
    assert r.reason.startswith("fence_virsh confirmed site A off")
    assert (hypervisor / "state").read_text().strip() == "shut off"


def test_a_domain_that_stays_on_is_unconfirmed(sshd: Sshd, hypervisor: Path) -> None:
    (hypervisor / "stuck").touch()
    r = fence_off(_spec(sshd, hypervisor), "A")
    assert not r.confirmed
    assert r.reason.startswith("fence_virsh action=off exited 1"), r.reason


def test_a_hung_fence_device_is_unconfirmed_at_the_deadline(sshd: Sshd, hypervisor: Path) -> None:
    (hypervisor / "hang").touch()
    r = fence_off(_spec(sshd, hypervisor, timeout=3.0), "A")
    assert not r.confirmed
    assert r.reason == "fence_virsh did not answer within 3s"
    assert 2.9 <= r.seconds < 6.0


def test_a_wrong_login_is_unconfirmed(sshd: Sshd, hypervisor: Path) -> None:
    spec = _spec(sshd, hypervisor)
    bad = FenceAgent(spec.agent, MappingProxyType({**spec.options, "username": "nobody"}), 20.0)
    r = fence_off(bad, "A")
    assert not r.confirmed and r.reason.startswith("fence_virsh action=off exited 1")


def test_a_missing_agent_is_unconfirmed() -> None:
    r = fence_off(FenceAgent("fence_nosuchthing"), "A")
    assert not r.confirmed
    assert r.reason == "fence agent fence_nosuchthing is not installed (package fence-agents)"
