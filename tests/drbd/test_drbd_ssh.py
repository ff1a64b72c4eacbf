"""The DRBD driver on a remote node: every command through the real SSHRunner (paramiko,
pinned host key) to a private sshd on 127.0.0.1 whose sessions run the fake DRBD tools."""

from __future__ import annotations

import pytest

from drorch.environment import Environment
from drorch.model.types import Node
from drorch.remote.ssh import SSHRunner
from drorch.replication.base import Role
from drorch.replication.drbd.driver import DrbdReplicator
from drorch.replication.drbd.ops import DrbdDiskNotUpToDate
from tests.drbd.clusters import two_site_cluster
from tests.drbd.conftest import FakeDrbdSshd


def driver(sshd: FakeDrbdSshd) -> tuple[DrbdReplicator, SSHRunner]:
    runner = SSHRunner(sshd.target, key_filename=sshd.client_key, known_hosts=sshd.known_hosts)
    node = Node("b1", sshd.target)
    env = Environment(runners={"b1": runner})
    volume = two_site_cluster().volumes[0]
    return DrbdReplicator(volume, node, env, state_dir=str(sshd.state_dir)), runner


def test_status_and_promote_over_ssh(drbd_sshd: FakeDrbdSshd) -> None:
    drbd_sshd.state_file.write_text("connected-secondary")
    drv, runner = driver(drbd_sshd)
    try:
        st = drv.status()
        assert (st.role, st.generation["current"]) == (Role.SECONDARY, "F3A1D1F7F5ECF34A")
        drv.promote(12)
    finally:
        runner.close()
    assert (drbd_sshd.state_dir / "r0.epoch").read_text() == "12\n"  # written by remote sh
    calls = drbd_sshd.log.read_text().splitlines()
    assert calls[-1] == "drbdadm primary r0"
    assert "drbdsetup status r0 --json" in calls and "drbdsetup get-gi r0 1 0" in calls


def test_typed_error_carries_the_remote_drbdadm_message(drbd_sshd: FakeDrbdSshd) -> None:
    drbd_sshd.state_file.write_text("connected-secondary")
    drbd_sshd.fail_file.write_text("drbdadm-primary-not-uptodate.stderr 17\n")
    drv, runner = driver(drbd_sshd)
    try:
        with pytest.raises(DrbdDiskNotUpToDate) as err:
            drv.promote(20)
    finally:
        runner.close()
        drbd_sshd.fail_file.write_text("")
    assert err.value.returncode == 17
    assert "r0: State change failed: (-2) Need access to UpToDate data" in err.value.message
