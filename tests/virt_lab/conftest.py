"""The test suite's own two-site lab: real network namespaces, one libvirtd per site,
real QEMU (TCG) guests. Brought up once per session and torn down by PID afterwards,
also when a test fails. It runs beside an operator's lab: its own name, namespace prefix
and subnet; the guest image cache is shared ($DRORCH_LAB_DIR, default .cache/lab).
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from drorch.clock import SystemClock
from drorch.lab.guest import GuestSpec, domain_xml, wait_heartbeat
from drorch.lab.image import GuestImage
from drorch.lab.lab import Lab
from drorch.lab.layout import LabLayout
from drorch.lab.processes import live_pid
from drorch.remote.local import LocalRunner
from drorch.virt.base import NoSuchVM, VMState
from drorch.virt.libvirt import LibvirtHypervisor

TEST_LAYOUT = LabLayout(name="pytest", prefix="dt", subnet="10.77.61")


@dataclass
class RunningLab:
    lab: Lab
    image: GuestImage
    a: LibvirtHypervisor
    b: LibvirtHypervisor

    @property
    def layout(self) -> LabLayout:
        return self.lab.layout


@pytest.fixture(scope="session")
def running_lab() -> Iterator[RunningLab]:
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root (network namespaces, libvirtd)")
    lab = Lab(TEST_LAYOUT, LocalRunner())
    # machine-wide, not per checkout: every worktree's test session uses these namespaces
    with session_lock(Path("/tmp") / f"drorch-lab-{TEST_LAYOUT.prefix}.lock"):
        yield from _run_lab(lab)


@contextmanager
def session_lock(path: Path, timeout: float = 600.0) -> Iterator[None]:
    """One test session per lab at a time (a second concurrent `pytest` waits for the
    first, bounded, instead of tearing its lab down under it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the test lab is busy (another session holds {path})")
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_lab(lab: Lab) -> Iterator[RunningLab]:
    try:
        image = lab.up()
        hyps = [
            LibvirtHypervisor.connect(
                TEST_LAYOUT.local_uri(site),
                site,
                peer_uri=TEST_LAYOUT.peer_uri(site),
                abort_grace=15.0,
            )
            for site in TEST_LAYOUT.site_names
        ]
        yield RunningLab(lab, image, hyps[0], hyps[1])
        for hyp in hyps:
            hyp.close()
    finally:
        lab.down()


@dataclass
class Guest:
    name: str
    serial_log: Path
    xml: str

    def wait_heartbeat(self, above: int = 0, timeout: float = 30.0) -> int:
        return wait_heartbeat(self.serial_log, SystemClock(), above=above, timeout=timeout)


_counter = itertools.count(1)
GuestFactory = Callable[..., Guest]


@pytest.fixture
def guest(running_lab: RunningLab, request: pytest.FixtureRequest) -> Iterator[GuestFactory]:
    """`guest(cmdline="", disk_xml=None, start=True, acpi=True)` defines a heartbeat guest
    (two beats a second) at site A, starts it and waits for its first heartbeat. Every
    guest is destroyed and undefined at both sites afterwards."""
    made: list[str] = []

    def make(
        *, cmdline: str = "", disk_xml: str | None = None, start: bool = True, acpi: bool = True
    ) -> Guest:
        test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[-24:].strip("-")
        name = f"dt{next(_counter)}-{test}"
        log = running_lab.layout.guest_dir / f"{name}.serial.log"
        log.unlink(missing_ok=True)
        # two beats a second keep the heartbeat checks short
        extra = f"hb=0.5 {cmdline}".strip()
        spec = GuestSpec(name, cmdline=extra, disk_xml=disk_xml, acpi=acpi)
        xml = domain_xml(spec, running_lab.image, log)
        made.append(name)
        running_lab.a.define(xml)
        g = Guest(name, log, xml)
        if start:
            running_lab.a.start(name)
            g.wait_heartbeat()
        return g

    yield make
    for name in made:
        discard(running_lab, name)


def discard(lab: RunningLab, name: str) -> None:
    """Remove a test guest from both sites without waiting for libvirt to reap it:
    undefine (a running guest turns transient) and SIGKILL its QEMU by PID. libvirt's
    own destroy waits ~2 s here for PID 1 to reap the zombie; tests need not. So a guest
    discarded earlier may still be listed, and vanish between any two calls here."""
    for hyp in (lab.a, lab.b):
        if hyp.state(name) == VMState.UNDEFINED:
            continue
        try:
            hyp.undefine(name)
        except NoSuchVM:
            continue  # reaped meanwhile: nothing left to discard
        pid = live_pid(lab.layout.run_dir(hyp.site) / "qemu" / f"{name}.pid", "qemu-system")
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
