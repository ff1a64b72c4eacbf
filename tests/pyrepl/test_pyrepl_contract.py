"""PyreplReplicator (the config-driven driver) passes the shared Replicator contract,
against real in-process daemons on loopback."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from drorch.environment import Environment
from drorch.model.types import Driver, Node, ReplicationMode, Volume
from drorch.replication.base import ReplicationError, Replicator, StaleEpoch, UnsafeOperation
from drorch.replication.drivers import open_replicator
from drorch.replication.pyrepl.control_path import replica_control_path
from drorch.replication.pyrepl.driver import PyreplReplicator
from drorch.testing.contract_replicator import ReplicatorPair
from drorch.testing.contracts import ReplicatorContract
from tests.pyrepl.conftest import SIZE, Cluster, wait_until
from tests.pyrepl.nbd_client import NbdClient


def volume(tmp_path: Path) -> Volume:
    return Volume(
        name="vol",
        driver=Driver.PYREPL,
        mode=ReplicationMode.SYNC,
        size=SIZE,
        port=17700,
        paths={"n1": str(tmp_path / "a.img"), "n2": str(tmp_path / "b.img")},
    )


def write_through_export(rep: Replicator) -> None:
    uri = rep.status().nbd
    assert uri is not None
    host, port = uri.removeprefix("nbd://").split("/")[0].rsplit(":", 1)
    with NbdClient(host, int(port), "vol") as c:
        c.write(0, b"diverged" * 512)


class TestPyreplContract(ReplicatorContract):
    @pytest.fixture
    def pair(self, cluster: Cluster, tmp_path: Path) -> Iterator[ReplicatorPair]:
        a, b = cluster.pair()
        env = Environment(base_dir=tmp_path)
        vol = volume(tmp_path)
        primary = PyreplReplicator(vol, Node("n1"), env, control=a.control)
        secondary = PyreplReplicator(vol, Node("n2"), env, control=b.control)
        yield ReplicatorPair(primary, secondary, diverge=write_through_export)


def test_driver_map_builds_a_pyrepl_replicator(tmp_path: Path) -> None:
    rep = open_replicator(volume(tmp_path), Node("n1"), Environment(base_dir=tmp_path))
    assert isinstance(rep, PyreplReplicator)
    assert rep.control == replica_control_path(tmp_path, "vol", "n1")


def test_up_starts_daemons_that_connect_and_down_stops_them(tmp_path: Path) -> None:
    env = Environment(base_dir=tmp_path)
    vol = volume(tmp_path)
    n1 = PyreplReplicator(vol, Node("n1"), env)
    n2 = PyreplReplicator(vol, Node("n2"), env)
    pids: list[int] = []
    try:
        n1.up()
        pids.append(int(n1.status().extra["pid"]))
        n2.up()
        pids.append(int(n2.status().extra["pid"]))
        n1.up()  # idempotent: the daemon already answers, no second one starts
        assert int(n1.status().extra["pid"]) == pids[0]
        # day 0: both disks Inconsistent, connected, nothing to sync from yet
        wait_until("connected", lambda: n1.status().connection.value == "Connected")
        assert n1.status().disk.value == "Inconsistent"
        with pytest.raises(UnsafeOperation):
            n1.promote()
        n1.promote(force=True, accept_data_loss=True)
        wait_until("initial sync", lambda: n2.status().disk.value == "UpToDate")
        assert n2.status().peer_role.value == "primary"
        with pytest.raises(ReplicationError):
            n1.down()  # refused while primary
        n1.demote()
        n1.down()
        n2.down()
        wait_until("daemons exit", lambda: not any(alive(p) for p in pids))
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of ours would still answer; the daemons are not our children (setsid)
    return True


class TestPyreplOverARunner(ReplicatorContract):
    """The same contract with both nodes reached through their CommandRunner (as over
    SSH): the driver runs `drorch repl ... --format json` and maps exit codes back."""

    @pytest.fixture
    def pair(self, cluster: Cluster, tmp_path: Path) -> Iterator[ReplicatorPair]:
        from drorch.remote.local import LocalRunner

        a, b = cluster.pair()
        bindir = str(Path(sys.executable).parent)
        runner = LocalRunner(env={"PATH": f"{bindir}:{os.environ.get('PATH', '')}"})
        env = Environment(base_dir=tmp_path, runners={"n1": runner, "n2": runner})
        vol = volume(tmp_path)
        primary = PyreplReplicator(vol, Node("n1", address="root@n1"), env, control=a.control)
        secondary = PyreplReplicator(vol, Node("n2", address="root@n2"), env, control=b.control)
        yield ReplicatorPair(primary, secondary, diverge=write_through_export)


def test_serve_command_follows_the_config(tmp_path: Path) -> None:
    vol = volume(tmp_path)
    env = Environment(base_dir=tmp_path)
    local = PyreplReplicator(vol, Node("n2"), env)._serve_argv()
    assert local[local.index("--listen") + 1] == "127.0.0.1:17701"
    assert local[local.index("--peer") + 1] == "127.0.0.1:17700"
    assert local[local.index("--role") + 1] == "secondary"
    assert local[local.index("--size") + 1] == str(SIZE)
    assert local[local.index("--meta") + 1].endswith(".drorch-state/pyrepl/vol@n2.meta")
    node = Node("n1", address="root@10.0.0.1:22", replication_address="10.1.0.1")
    remote = PyreplReplicator(vol, node, env, peer_address="10.2.0.1")._serve_argv()
    assert remote[remote.index("--listen") + 1] == "10.1.0.1:17700"
    assert remote[remote.index("--peer") + 1] == "10.2.0.1:17700"


def test_up_and_down_through_a_runner(tmp_path: Path) -> None:
    """Nodes reached through their CommandRunner (as over SSH): `up` starts `drorch repl
    serve` on the node, status and role changes run `drorch repl ... --format json`."""
    from drorch.remote.local import LocalRunner

    bindir = str(Path(sys.executable).parent)
    runner = LocalRunner(env={"PATH": f"{bindir}:{os.environ.get('PATH', '')}"})
    env = Environment(base_dir=tmp_path, runners={"n1": runner, "n2": runner})
    vol = volume(tmp_path)
    n1 = PyreplReplicator(
        vol,
        Node("n1", address="root@n1", replication_address="127.0.0.1"),
        env,
        peer_address="127.0.0.2",
    )
    n2 = PyreplReplicator(
        vol,
        Node("n2", address="root@n2", replication_address="127.0.0.2"),
        env,
        peer_address="127.0.0.1",
    )
    pids: list[int] = []
    try:
        with pytest.raises(ReplicationError, match="no pyrepl daemon"):
            n1.status()
        for rep in (n1, n2):
            rep.up()
            pids.append(int(rep.status().extra["pid"]))
        wait_until("connected", lambda: n1.status().connection.value == "Connected")
        n1.promote(epoch=1, force=True, accept_data_loss=True)
        wait_until("initial sync", lambda: n2.status().disk.value == "UpToDate")
        with pytest.raises(StaleEpoch):
            n2.promote(epoch=0)
        n1.demote()
        n1.down()
        n2.down()
        wait_until("daemons exit", lambda: not any(alive(p) for p in pids))
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
