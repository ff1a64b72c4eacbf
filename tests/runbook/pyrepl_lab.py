"""The step-family lab (tests/runbook/steps_lab.py) on REAL pyrepl volumes: two `drorch
repl serve` daemons per volume on loopback, started by the driver's up() and killed by
PID at the end, on real time (real daemons do not follow a FakeClock)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from drorch.clock import SystemClock
from drorch.model.types import Node, Volume
from drorch.replication.drivers import open_replicator
from drorch.replication.pyrepl.driver import PyreplReplicator
from drorch.wait import wait_until
from tests.ports import free_port_block
from tests.runbook.steps_lab import SimLab

Opener = Callable[[Volume, Node], PyreplReplicator]


def pyrepl_edits() -> dict[str, str]:
    """lab/sim.yaml's edits for real volumes: 2 MiB each, on ports of their own."""
    # two replicas per volume take port+0 and port+1 (replication) and nbd_port+0/+1
    p = [free_port_block(2) for _ in range(4)]  # distinct, never overlapping
    return {
        "size: 64MiB": "size: 2MiB",
        "size: 128MiB": "size: 2MiB",
        "port: 7789": f"port: {p[0]}",
        "port: 7791": f"port: {p[1]}",
        "nbd_port: 10809": f"nbd_port: {p[2]}",
        "nbd_port: 10811": f"nbd_port: {p[3]}",
    }


def real_time_lab(tmp: Path, edits: Mapping[str, str]) -> SimLab:
    """A SimLab on the system clock (real daemons need real time), with the folder the
    volumes' backing files go in."""
    lab = SimLab(tmp, edits, SystemClock())
    (tmp / ".drorch-state" / "disks").mkdir(parents=True, exist_ok=True)
    return lab


def _open(lab: SimLab) -> Opener:
    def opener(volume: Volume, node: Node) -> PyreplReplicator:
        rep = open_replicator(volume, node, lab.env)
        assert isinstance(rep, PyreplReplicator)
        return rep

    return opener


@contextlib.contextmanager
def running_volumes(lab: SimLab, opener: Opener | None = None) -> Iterator[list[int]]:
    """Open every replica of every volume (`opener`, by default the cluster's own
    driver), register it in the lab's environment and start it; yield the daemons' pids.
    At the end each replica is demoted and stopped, and every daemon killed by PID."""
    make = opener or _open(lab)
    pids: list[int] = []
    try:
        for vol in lab.cluster.volumes:
            for node in vol.paths:
                _, model = lab.cluster.node(node)
                rep = make(vol, model)
                lab.env.replicators[(vol.name, node)] = rep
                rep.up()
                pids.append(int(rep.status().extra["pid"]))
        yield pids
    finally:
        for opened in lab.env.replicators.values():
            try:
                opened.demote()
                opened.down()
            except Exception:  # torn down by PID below
                pass
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def in_sync(lab: SimLab) -> None:
    """Day 0 on every volume: A's copy primary once connected (both are Inconsistent
    before the first sync, hence forced), then B's UpToDate."""
    clock = SystemClock()
    for vol in lab.cluster.volumes:
        a, b = (lab.env.replicators[(vol.name, n)] for n in ("a1", "b1"))
        assert wait_until(
            clock, lambda a=a: a.status().connection.value == "Connected", clock.monotonic() + 20
        )
        a.promote(force=True, accept_data_loss=True)  # day 0: both Inconsistent
        assert wait_until(
            clock,
            lambda b=b: b.status().disk.value == "UpToDate",
            clock.monotonic() + 30,
            interval=0.1,
        )
