"""DR end to end with drorch's own replicator: a guest boots from the NBD export of
`drorch repl serve` at site A, writes its counter synchronously replicated to site B,
site A dies (QEMU and the replicator killed by PID), B is promoted and the guest is
cold-started there from its own export (the NBD host remapped), counting on from the
last write site A acknowledged."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drorch.lab.processes import live_pid
from drorch.replication.pyrepl.control import ControlClient, ControlUnreachable
from drorch.virt.base import VMState
from drorch.virt.libvirt import LibvirtHypervisor
from drorch.virt.xmlmap import nbd_disk_xml, nbd_key
from tests.virt_lab.conftest import GuestFactory, RunningLab

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
REPL_PORT, NBD_PORT = 7811, 10811


class Replicator:
    """`drorch repl serve` inside a site's network namespace, stopped by PID."""

    def __init__(self, lab: RunningLab, root: Path, site: str, role: str, peer: str | None) -> None:
        address = lab.layout.site(site).address
        self.control = root / f"{site}.ctl"
        self.log = root / f"{site}.log"
        backing = root / f"{site}.img"
        argv = ["ip", "netns", "exec", lab.layout.site(site).netns, sys.executable, "-m"]
        argv += ["drorch", "repl", "serve", "--name", "vol", "--backing", str(backing)]
        argv += ["--size", "4MiB", "--role", role, "--mode", "sync"]
        argv += ["--listen", f"{address}:{REPL_PORT}", "--nbd", f"{address}:{NBD_PORT}"]
        argv += ["--control", str(self.control), "--meta", str(root / f"{site}.meta")]
        if peer:
            argv += ["--peer", f"{peer}:{REPL_PORT}"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=log, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}
            )

    def status(self) -> dict[str, Any]:
        return dict(ControlClient(self.control, timeout=5).call("status"))

    def wait(self, what: str, ok: Callable[[dict[str, Any]], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"repl serve exited: {self.log.read_text()}")
            try:
                last = self.status()
                if ok(last):  # type: ignore[arg-type]
                    return
            except ControlUnreachable as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"{what} within {timeout} s; last status {last}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        self.proc.wait(20)


@pytest.fixture
def replicators(running_lab: RunningLab) -> Iterator[Callable[..., Replicator]]:
    """Fresh volumes in a directory of their own (the guest dir: both namespaces see it)."""
    root = Path(tempfile.mkdtemp(prefix="nbd-", dir=running_lab.layout.guest_dir))
    started: list[Replicator] = []

    def start(site: str, role: str, peer: str | None = None) -> Replicator:
        r = Replicator(running_lab, root, site, role, peer)
        started.append(r)
        r.wait("control socket answers", lambda st: True)
        return r

    try:
        yield start
    finally:
        for r in started:
            r.stop(signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def disk_counter_in_log(text: str) -> int:
    marker = "DISK FOUND last='DISKCOUNTER "
    at = text.rindex(marker) + len(marker)
    return int(text[at : text.index("'", at)])


def test_guest_on_a_pyrepl_export_fails_over_to_b_without_losing_acked_writes(
    running_lab: RunningLab, guest: GuestFactory, replicators: Callable[..., Replicator]
) -> None:
    a_addr = running_lab.layout.site("siteA").address
    b_addr = running_lab.layout.site("siteB").address
    secondary = replicators("siteB", "secondary")
    primary = replicators("siteA", "primary", peer=b_addr)
    primary.wait(
        "sync with the peer",
        lambda st: st["connection"] == "Connected" and st["disk"] == "UpToDate",
    )

    g = guest(cmdline="disk=1", disk_xml=nbd_disk_xml("vol", a_addr, NBD_PORT))
    g.wait_heartbeat(above=3)
    assert "DISK FOUND last=''" in g.serial_log.read_text(errors="replace")  # a fresh volume
    saved = running_lab.a.export_xml(g.name)

    # site A dies: its QEMU and its replicator, by PID
    qemu = live_pid(running_lab.layout.run_dir("siteA") / "qemu" / f"{g.name}.pid", "qemu")
    assert qemu is not None
    os.kill(qemu, signal.SIGKILL)
    primary.stop(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while running_lab.a.state(g.name) == VMState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
    last_beat = g.wait_heartbeat()

    promoted = ControlClient(secondary.control, timeout=30).call(
        "promote", epoch=None, force=False, accept_data_loss=False
    )
    assert promoted, "promote answers"
    secondary.wait("primary at B", lambda st: st["role"] == "primary")
    # fencing resource-only and no witness here: the operator records A's copy as
    # outdated, or B's first write would freeze (A is dead: nothing is lost)
    ControlClient(secondary.control, timeout=30).call("outdate_peer", accept_data_loss=True)

    b = LibvirtHypervisor.connect(
        running_lab.layout.local_uri("siteB"),
        "siteB",
        path_map={nbd_key(a_addr, NBD_PORT, "vol"): nbd_key(b_addr, NBD_PORT, "vol")},
    )
    try:
        result = b.cold_start(saved, [running_lab.a])
        assert result.checked_sites == ("siteA",)
        assert f'<host name="{b_addr}" port="{NBD_PORT}"' in b.export_xml(g.name).replace("'", '"')
        assert b.state(g.name) == VMState.RUNNING
        g.wait_heartbeat(above=last_beat, timeout=30)
    finally:
        b.close()
    recovered = disk_counter_in_log(g.serial_log.read_text(errors="replace"))
    # sync replication: every write the guest finished at A is on B's replica (the beat
    # printed just before the kill may not have been written yet)
    assert recovered >= last_beat - 1
