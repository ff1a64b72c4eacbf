"""Diskless: DRBD's `on-io-error detach` for pyrepl, on real daemons, sockets and files.

No disk here can be made to fail on demand (no device-mapper, no fault-injecting
device), so the failure is injected at the one place the engine touches the disk: the
system calls on the backing file's descriptor fail with EIO. Everything around them
(NBD, the link, metadata, restart, resync) is real.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from drorch.replication.base import DiskState, Role
from drorch.replication.pyrepl import nbd_proto as nbd
from drorch.replication.pyrepl import storage
from drorch.replication.pyrepl.handshake import Action, SideView, decide_sync
from drorch.replication.pyrepl.meta import Generation
from drorch.replication.pyrepl.storage import Backing, DiskFailed
from tests.pyrepl.conftest import SIZE, Cluster, Side, connected, wait_until
from tests.pyrepl.nbd_client import NbdError

BLOCK = 4096


def fail_disk(side: Side) -> None:
    """From now on every system call the Backing makes on this side's descriptor fails
    with EIO, as a dying disk's would; other descriptors (the peer's, the metadata, the
    bitmap) are untouched."""
    real_fd = side.engine.backing.fd
    path = str(side.engine.backing.path)

    class FailingOs:
        def __getattr__(self, name: str) -> object:
            attr = getattr(os, name)
            if name not in ("pread", "pwrite", "pwritev", "fdatasync", "lseek"):
                return attr

            def wrapped(fd: int, *args: object, **kwargs: object) -> object:
                if fd == real_fd:
                    raise OSError(errno.EIO, os.strerror(errno.EIO), path)
                return attr(fd, *args, **kwargs)

            return wrapped

    storage.os = FailingOs()  # type: ignore[assignment]


@pytest.fixture(autouse=True)
def _restore_storage_os() -> Iterator[None]:
    yield
    storage.os = os


def test_a_primary_whose_disk_fails_detaches_and_the_peer_keeps_the_data(
    cluster: Cluster, tmp_path: Path
) -> None:
    a, b = cluster.pair(mode="sync")
    with a.client() as client:
        client.write(0, b"k" * BLOCK)  # acknowledged: on both disks
        fail_disk(a)
        with pytest.raises(NbdError) as write_err:
            client.write(BLOCK, b"x" * BLOCK)
        assert write_err.value.errno == nbd.EIO
        with pytest.raises(NbdError) as read_err:
            client.read(0, BLOCK)
        assert read_err.value.errno == nbd.EIO
    st = a.status()
    assert (st["role"], st["disk"], st["connection"]) == ("primary", "Diskless", "StandAlone")
    assert "local disk detached after an I/O error" in st["extra"]["last_error"]
    assert (
        "write of" in st["extra"]["last_error"]
        and "Input/output error" in (st["extra"]["last_error"])
    )
    # the peer still holds every acknowledged write and can take over
    assert b.status()["disk"] == "UpToDate"
    a.call("demote")  # a Diskless primary can still step down
    b.call("promote")
    assert b.content()[:BLOCK] == b"k" * BLOCK
    with pytest.raises(Exception, match="Diskless"):
        a.call("promote", force=True, accept_data_loss=True)


def test_a_repaired_disk_reattaches_inconsistent_and_resyncs_in_full(
    cluster: Cluster, tmp_path: Path
) -> None:
    a, b = cluster.pair(mode="sync")
    with a.client() as client:
        client.write(0, b"k" * BLOCK)
    fail_disk(b)  # the secondary's disk dies under a replicated write
    with a.client() as client:
        client.write(2 * BLOCK, b"y" * BLOCK)  # completes: local only once the link drops
    wait_until("b detached", lambda: b.status()["disk"] == "Diskless")
    st_b = b.status()
    assert st_b["connection"] == "StandAlone"
    assert "local disk detached" in st_b["extra"]["last_error"]
    st_a = a.status()
    assert st_a["connection"] != "Connected" and st_a["out_of_sync_bytes"] > 0
    # the operator replaces the disk (here: the same file, working again) and restarts b
    storage.os = os
    backing = b.backing
    cluster.stop(b)
    b2 = cluster.start("b", Role.SECONDARY, mode="sync")
    assert b2.backing == backing
    st = b2.status()
    assert st["disk"] == "Inconsistent"
    assert st["out_of_sync_bytes"] == SIZE  # every region: nothing on it is trusted
    a.daemon.link.peer_addr = b2.listen  # b listens on a new port after the restart
    a.call("connect")
    wait_until("full resync", lambda: connected(a) and connected(b2), timeout=30)
    assert b2.status()["disk"] == "UpToDate"
    assert a.content() == b2.content()


def test_the_handshake_refuses_a_diskless_side() -> None:
    def view(disk: DiskState, role: Role) -> SideView:
        return SideView(
            name="vol",
            node_id="n" + disk.value,
            size=SIZE,
            region_size=65536,
            role=role,
            disk=disk,
            generation=Generation("g1"),
            epoch=0,
        )

    up, gone = view(DiskState.UP_TO_DATE, Role.PRIMARY), view(DiskState.DISKLESS, Role.SECONDARY)
    for local, peer, who in ((up, gone, "peer"), (gone, up, "local")):
        decision = decide_sync(local, peer)
        assert decision.action == Action.REFUSE
        assert decision.reason.startswith(f"{who} disk is Diskless")


def test_a_detached_backing_never_touches_the_device_again(tmp_path: Path) -> None:
    failures: list[str] = []
    backing = Backing(tmp_path / "disk.img", 1 << 20, on_failure=failures.append)
    backing.pwrite(0, b"ok")
    with pytest.raises(DiskFailed, match=r"flush of .* failed: Bad file descriptor"):
        os.close(backing.fd)  # the device went away underneath
        backing.sync()
    assert backing.fd == -1 and len(failures) == 1
    with pytest.raises(DiskFailed):
        backing.pread(0, 2)
    assert len(failures) == 1  # reported once
