"""Positive fencing in the real lab: the real `fence_virsh` logs in over a real private
sshd on loopback and drives the real virsh against site A's real libvirtd (its unix
socket, through fence_virsh's command prefix `env LIBVIRT_DEFAULT_URI=...`), powering a
running QEMU guest off and confirming it OFF; asking again about a domain that is not
there is unconfirmed."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest

from drorch.fencing.fence_agent import fence_off
from drorch.model.types import FenceAgent
from drorch.virt.base import VMState
from tests.sshd_server import Sshd, private_sshd
from tests.virt_lab.conftest import GuestFactory, RunningLab

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with private_sshd(tmp_path_factory.mktemp("sshd")) as s:
        yield s


def _spec(sshd: Sshd, uri: str, plug: str) -> FenceAgent:
    if shutil.which("fence_virsh") is None or shutil.which("virsh") is None:
        pytest.fail("fence_virsh/virsh missing: fence-agents, libvirt-clients (system packages)")
    env = Path(shutil.which("env") or "/usr/bin/env")
    return FenceAgent(
        "fence_virsh",
        MappingProxyType(
            {
                "ip": "127.0.0.1",
                "ipport": str(sshd.port),
                "username": sshd.user,
                "identity_file": str(sshd.client_key),
                "ssh_path": f"/usr/bin/ssh -o UserKnownHostsFile={sshd.known_hosts}",
                "plug": plug,
                "use_sudo": "1",  # the prefix below, not sudo: virsh at site A's socket
                "sudo_path": f"{env} {shlex.quote('LIBVIRT_DEFAULT_URI=' + uri)}",
                "power_timeout": "20",
                "login_timeout": "10",
            }
        ),
        60.0,
    )


def test_fence_virsh_powers_a_real_guest_off_and_confirms(
    running_lab: RunningLab, guest: GuestFactory, sshd: Sshd
) -> None:
    g = guest()
    assert running_lab.a.state(g.name) == VMState.RUNNING
    uri = running_lab.layout.local_uri("siteA")
    r = fence_off(_spec(sshd, uri, g.name), "A")
    assert r.confirmed, r.reason
    assert r.reason.startswith("fence_virsh confirmed site A off")
    assert running_lab.a.state(g.name) != VMState.RUNNING


def test_fence_virsh_of_an_unknown_domain_is_unconfirmed(
    running_lab: RunningLab, sshd: Sshd
) -> None:
    uri = running_lab.layout.local_uri("siteA")
    r = fence_off(_spec(sshd, uri, "dt-no-such-domain"), "A")
    assert not r.confirmed
    assert r.reason.startswith("fence_virsh action=off exited 1"), r.reason
