"""The shipped hurricane-planned-migration runbook, end to end, on an ASYNC pyrepl volume
with a real backlog: real `drorch repl serve` daemons, the web volume's replication
behind the WAN proxy (DELAY one-way, each direction), a guest at A (an NBD client on
A's export) writing all along, the sim hypervisor for the VMs.

It checks that the runbook switches appdata to sync and waits for the drain (drawing
bytes left and the rate) before anything moves, that everything then moves to B, that
every write the guest had acknowledged is at B (compared byte for byte through B's own
NBD export), and that appdata still replicates sync afterwards: the runbook's design
(its switch is undone only when the run rolls back)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drorch.clock import SystemClock
from drorch.lab.wan import Impairment, WanLink, WanState, WanStateFile
from drorch.lab.wan_proxy import ProxyThread
from drorch.model.types import Node, Volume
from drorch.replication.pyrepl.driver import PyreplReplicator
from drorch.runbook.engine import Engine
from drorch.runbook.gates import Answer
from drorch.runbook.journal import Journal
from drorch.runbook.load import load_runbook
from drorch.runbook.setup import RecordingOutput, RunOptions
from tests.conftest import REPO
from tests.ports import free_port_block
from tests.pyrepl.nbd_client import NbdClient
from tests.runbook.pyrepl_lab import in_sync, real_time_lab, running_volumes
from tests.runbook.steps_lab import SimLab

DELAY = 0.2  # one-way, seconds: the lab WAN proxy then carries at most ~20 MiB/s
SIZE = 32 * 1024 * 1024
BLOCK = 512 * 1024  # large writes: the guest outpaces the WAN even on a slow machine
MIB = 1024 * 1024
HURRICANE = REPO / "runbooks" / "hurricane-planned-migration.yaml"
A_ADDR, B_ADDR = "127.0.0.1", "127.0.0.2"  # each site's replication address
A_TO_B, B_TO_A = "127.0.0.3", "127.0.0.4"  # the WAN proxy's ends (appdata only)


def _edits(port: int, other: int, nbd: int, nbd2: int) -> dict[str, str]:
    return {
        "size: 64MiB": "size: 32MiB",
        "size: 128MiB": "size: 2MiB",
        "mode: sync             #": "mode: async            #",
        "      region_size: 64KiB\n": "      region_size: 64KiB\n      max_lag: 16MiB\n",
        "port: 7789": f"port: {port}",
        "port: 7791": f"port: {other}",
        "nbd_port: 10809": f"nbd_port: {nbd}",
        "nbd_port: 10811": f"nbd_port: {nbd2}",
        "      - name: a1\n        address: local": (
            f"      - name: a1\n        replication_address: {A_ADDR}\n        address: local"
        ),
        "      - name: b1\n        address: local": (
            f"      - name: b1\n        replication_address: {B_ADDR}\n        address: local"
        ),
    }


@dataclass
class WanLab:
    lab: SimLab
    proxy: ProxyThread
    pids: list[int]


@pytest.fixture
def wan_lab(tmp_path: Path) -> Iterator[WanLab]:
    port, other, nbd, nbd2 = (free_port_block(2) for _ in range(4))
    lab = real_time_lab(tmp_path, _edits(port, other, nbd, nbd2))
    state = WanStateFile(tmp_path / "wan.json")
    links = (
        WanLink("appdata a1->b1", "A-B", (A_TO_B, port), (B_ADDR, port)),
        WanLink("appdata b1->a1", "A-B", (B_TO_A, port), (A_ADDR, port)),
    )
    state.write(WanState(links, Impairment(delay=DELAY)))
    proxy = ProxyThread(state, seed=11).start()

    def across_the_wan(vol: Volume, node: Node) -> PyreplReplicator:
        if vol.name == "appdata":  # across the WAN proxy
            peer = A_TO_B if node.name == "a1" else B_TO_A
        else:
            peer = B_ADDR if node.name == "a1" else A_ADDR
        return PyreplReplicator(vol, node, lab.env, peer_address=peer)

    try:
        with running_volumes(lab, across_the_wan) as pids:
            yield WanLab(lab, proxy, pids)
    finally:
        proxy.stop()


class Guest:
    """The web VM's writes at A: 512 KiB blocks at random offsets, a new pattern each
    time; `image` is the disk as the guest knows it (only acknowledged writes)."""

    def __init__(self, uri: str, seed: int = 7) -> None:
        host, port = uri.removeprefix("nbd://").split("/")[0].rsplit(":", 1)
        self.client = NbdClient(host, int(port), "appdata")
        self.image = bytearray(SIZE)
        self.acked: list[float] = []  # wall-clock time of each acknowledgement
        self.error: BaseException | None = None
        self.rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="guest", daemon=True)

    def start(self) -> Guest:
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        try:
            while not self._stop.is_set():
                offset = self.rng.randrange(SIZE // BLOCK) * BLOCK
                data = n.to_bytes(8, "big") * (BLOCK // 8)
                self.client.write(offset, data)
                self.image[offset : offset + BLOCK] = data  # acknowledged: it must survive
                self.acked.append(time.time())
                n += 1
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        """Stop between two writes and close the export (the VM leaves A)."""
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "a write hung"
        self.client.flush()
        self.client.close()
        assert self.error is None, self.error


def _read_all(uri: str) -> bytes:
    host, port = uri.removeprefix("nbd://").split("/")[0].rsplit(":", 1)
    with NbdClient(host, int(port), "appdata") as c:
        return b"".join(c.read(off, MIB) for off in range(0, SIZE, MIB))


class Echo(RecordingOutput):
    """Records, and prints each line as it comes (seen with -s; a hang shows where)."""

    def line(self, text: str) -> None:
        super().line(text)
        print(text, flush=True)


class AtTheGate:
    """Answers the run's one gate ("Move every VM...?"): the guest stops writing at A
    (it is about to move), and what the replicas say at that moment is kept."""

    def __init__(self, wan: WanLab, guest: Guest) -> None:
        self.wan, self.guest = wan, guest
        self.seen: dict[str, dict[str, object]] = {}

    def ask(self, prompt: str, step: str) -> Answer:
        assert step == "move", step
        self.guest.stop()
        reps = self.wan.lab.env.replicators
        self.seen = {n: reps[("appdata", n)].status().as_dict() for n in ("a1", "b1")}
        return Answer(True, "tester (at the gate)")


@pytest.mark.slow
def test_hurricane_runbook_drains_an_async_volume_then_moves_without_losing_a_write(
    wan_lab: WanLab,
) -> None:
    lab = wan_lab.lab
    in_sync(lab)  # day 0: A primary, both UpToDate (appdata's initial sync via the WAN)
    a = lab.env.replicators[("appdata", "a1")]
    assert a.status().mode == "async"
    uri = a.status().nbd
    assert uri is not None
    guest = Guest(uri).start()
    # the guest writes faster than the WAN carries: a real backlog builds up at A
    assert _wait(lambda: a.status().lag_bytes >= 4 * MIB, 30), a.status()
    backlog = a.status().lag_bytes

    gate = AtTheGate(wan_lab, guest)
    runbook = load_runbook(HURRICANE)
    lab.output = Echo()
    options = RunOptions(output=lab.output, user="tester", confirmer=gate)
    started = time.monotonic()
    summary = Engine(runbook, lab.cluster, lab.env, options).start({"to": "B", "from": "A"})
    took = time.monotonic() - started
    tail = "\n".join(lab.output.lines[-40:])
    assert summary.status == "succeeded", tail

    # 1. switched to sync and drained before the gate, with the drain on the progress line
    events = Journal(lab.env.state_dir).events(summary.run_id)
    ends = {e.step: e for e in events if e.kind == "end"}
    switch = ends["switch-to-sync"]
    assert switch.status == "ok" and switch.changed, switch.message
    drained = switch.data["drained"]["appdata"]  # type: ignore[index]
    assert drained["backlog_bytes"] >= MIB, drained  # a real backlog, not an instant flip
    assert "appdata drained " in switch.message
    order = [(e.step, e.kind) for e in events if e.kind in ("start", "end")]
    assert order.index(("switch-to-sync", "end")) < order.index(("in-sync", "start"))
    assert order.index(("in-sync", "end")) < order.index(("move", "start"))
    bars = [u for u in lab.output.updates if "drain to sync:" in u[3]]
    assert len(bars) >= 2, lab.output.updates[:20]
    assert all(" MiB left at " in u[3] for u in bars)
    assert any("MiB/s" in u[3] and "? MiB/s" not in u[3] for u in bars), bars[:5]
    assert all(u[2] >= drained["backlog_bytes"] for u in bars)  # total: the backlog
    notes = [line for line in lab.output.lines if "drained " in line and " to sync in " in line]
    assert notes and notes[0].startswith("  appdata: drained "), lab.output.lines
    # at the gate (after the drain), both sides replicated sync: RPO 0 from then on
    assert {gate.seen[n]["mode"] for n in ("a1", "b1")} == {"sync"}, gate.seen
    assert not gate.seen["a1"]["extra"]["mode_switch"]  # type: ignore[index]
    # the guest wrote all along: before the run, during the drain, and sync after it
    assert any(t > switch.at for t in guest.acked), "no write acknowledged in sync mode"

    # 2. everything moved to B
    for vol in lab.cluster.volumes:
        roles = {n: lab.env.replicators[(vol.name, n)].status().role.value for n in vol.paths}
        assert roles == {"a1": "secondary", "b1": "primary"}, vol.name
    vms = lab.vms()
    assert {d for (d, site), st in vms.items() if st == "running"} == {"drorch-db", "drorch-web"}
    assert all(site == "B" for (_, site), st in vms.items() if st == "running"), vms
    migrated = next(e for e in ends.values() if e.action == "vm.migrate_live")  # sync now
    assert migrated.status == "ok" and "migrated web A -> B" in migrated.message

    # 3. every acknowledged write is at the new primary, byte for byte (its own export)
    b = lab.env.replicators[("appdata", "b1")]
    at_b = _read_all(str(b.status().nbd))
    assert at_b == bytes(guest.image), "an acknowledged write is missing at B"

    # 4. the hand-over done, the runbook gives appdata back its configured async mode
    # (restore-mode; dbdata, configured sync, stays sync)
    assert ends["restore-mode"].status == "ok", ends["restore-mode"].message
    assert ends["restore-mode"].message == "set appdata to async"
    for node in ("a1", "b1"):
        st = lab.env.replicators[("appdata", node)].status()
        assert st.mode == "async" and st.extra["mode_source"]["live"] is True, node
        assert lab.env.replicators[("dbdata", node)].status().mode == "sync", node

    print("\n".join(u[3] for u in bars[:: max(1, len(bars) // 6)]))
    print(
        f"\nbacklog when the run started {backlog / MIB:.1f} MiB; drain: "
        f"{drained['backlog_bytes'] / MIB:.1f} MiB at the switch (most "
        f"{drained['most_bytes_left'] / MIB:.1f} MiB) in {drained['seconds']:.2f} s; "
        f"{len(guest.acked)} writes acknowledged; run {took:.1f} s; "
        f"WAN {DELAY * 1000:g} ms one-way"
    )


def _wait(predicate: object, timeout: float) -> bool:
    from drorch.wait import wait_until

    clock = SystemClock()
    return bool(wait_until(clock, predicate, clock.monotonic() + timeout, interval=0.05))  # type: ignore[arg-type]
