"""A two-node DRBD 9 resource emulated behind two `CommandRunner`s (no kernel module).

`FakeDrbdPair(volume, ("a1", "b1"))` gives `runners["a1"]`, `runners["b1"]` that answer
`drbdadm up|down|primary|secondary|connect|disconnect|verify|invalidate|create-md|adjust|
net-options`,
`drbdsetup status RES --json`, `drbdsetup events2 [--now] --statistics RES`,
`drbdsetup get-gi`, `dmesg`, and drorch's epoch file (`cat`/atomic `sh -c` write)
the way DRBD does on a node: the same output formats (see tests/drbd/fixtures), the same
error messages and exit codes. Any other command fails the test (UnexpectedCommand).

With `fencing resource-only` (the volume's `fencing:`) and a `fence_peer` handler set
(`pair.fence_peer = lambda node: exit_code`, what DRBD's rendered handler would answer),
a Primary that loses an UpToDate peer suspends I/O (`suspended-fencing`) and runs the
handler: exit 3/4/5/7 resumes I/O (4: the peer is Outdated), anything else keeps I/O
suspended until `pair.run_fence_peer(node)` is answered better (DRBD's suspend-io; an
operator's `resume-io` is not emulated).

The emulation is deliberately small: resyncs complete instantly, and data generations are
counters (a promoted node that is not connected starts a new generation, like DRBD's new
current UUID). Both sides with a new generation since they last agreed is split brain:
connect then goes StandAlone after calling DRBD's `initial-split-brain` helper.

Here: each node's state, the pair's transitions and its output in DRBD's formats. The
commands themselves (argv in, exit code and output out) are in fake_drbd_runner.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from drorch.model.types import Volume
from drorch.remote.base import CommandRunner
from drorch.testing.fake_drbd_runner import FakeDrbdRunner


@dataclass
class FakeDrbdNode:
    name: str
    node_id: int
    up: bool = False
    role: str = "Secondary"
    disk: str = "UpToDate"
    wants_connection: bool = False
    discard_my_data: bool = False
    generation: int = 1
    history: set[int] = field(default_factory=set)
    split_brain: bool = False  # the last handshake detected split brain
    verifying: bool = False
    held_open: bool = False
    suspended: bool = False  # I/O suspended by fencing (resource-only, handler undecided)
    fence_exits: list[int] = field(default_factory=list)  # the handler's answers so far
    peer_outdated: bool = False
    protocol: str = "C"  # net options (drbdadm net-options); down/up resets them
    two_primaries: bool = False
    calls: list[tuple[str, ...]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # the node's small state files


class FakeDrbdPair:
    """The shared state of both nodes; `runners` maps node name -> its CommandRunner."""

    def __init__(self, volume: Volume, nodes: Sequence[str] = ("a1", "b1")) -> None:
        self.resource = volume.name
        self.size_kib = volume.size // 1024
        self.nodes = {n: FakeDrbdNode(n, i) for i, n in enumerate(nodes)}
        self.runners: dict[str, CommandRunner] = {n: FakeDrbdRunner(self, n) for n in nodes}
        self.module_loaded = True
        self.fencing = volume.fencing
        self.fence_peer: Callable[[FakeDrbdNode], int] | None = None
        self.protocol = "C" if volume.mode.value == "sync" else "A"  # the resource file's
        for node in self.nodes.values():
            node.protocol = self.protocol

    def peer(self, name: str) -> FakeDrbdNode:
        return next(n for n in self.nodes.values() if n.name != name)

    def connected(self) -> bool:
        a, b = self.nodes.values()
        return (
            a.up
            and b.up
            and a.wants_connection
            and b.wants_connection
            and not (a.split_brain or b.split_brain)
        )

    def handshake(self) -> None:
        """Called when both sides want a connection: resync or detect split brain."""
        a, b = self.nodes.values()
        if not (a.up and b.up and a.wants_connection and b.wants_connection):
            return
        for victim, other in ((a, b), (b, a)):
            if victim.discard_my_data:
                victim.generation, victim.history = other.generation, set(other.history)
                victim.disk = other.disk
                victim.discard_my_data = False
                victim.split_brain = other.split_brain = False
                return
        if a.generation == b.generation:
            a.split_brain = b.split_brain = False
            return
        if a.generation in b.history:  # b moved on: a resyncs from b
            a.generation, a.history, a.disk = b.generation, set(b.history), "UpToDate"
        elif b.generation in a.history:
            b.generation, b.history, b.disk = a.generation, set(a.history), "UpToDate"
        else:
            a.split_brain = b.split_brain = True
            a.wants_connection = b.wants_connection = False

    def lose_connection(self, was_connected: bool) -> None:
        """A Primary that loses its peer starts a new generation (DRBD: "Creating new
        current UUID"), so its writes while apart are told apart from the peer's."""
        if was_connected and not self.connected():
            for node in self.nodes.values():
                if node.role == "Primary":
                    self.new_generation(node)
                    if self.fencing == "resource-only" and self.peer(node.name).disk == "UpToDate":
                        node.suspended = True  # DRBD: suspend-io while the handler runs
                        self.run_fence_peer(node)

    def run_fence_peer(self, node: FakeDrbdNode) -> int:
        """Run the handler for a suspended Primary; its exit code decides (see above)."""
        if self.fence_peer is None:
            return -1
        code = self.fence_peer(node)
        node.fence_exits.append(code)
        if code in (3, 4, 5, 7):
            node.suspended = False
            node.peer_outdated = code == 4
        return code

    def new_generation(self, node: FakeDrbdNode) -> None:
        node.history.add(node.generation)
        node.generation = max(n.generation for n in self.nodes.values()) + 1
        if self.connected():  # both sides share the new generation
            peer = self.peer(node.name)
            peer.history.add(peer.generation)
            peer.generation = node.generation

    # -- output in DRBD's formats -----------------------------------------------------

    def gi(self, me: FakeDrbdNode) -> str:
        """`drbdsetup get-gi`: current, bitmap, two history UUIDs, then flags."""
        history = [*sorted(me.history, reverse=True), 0, 0]
        bitmap = 0 if self.connected() else me.generation
        uuids = [me.generation, bitmap, history[0], history[1]]
        return ":".join(f"{u:016X}" for u in uuids) + ":1:1:0:1:0:0:0:0:0:0:0:0:0:0\n"

    def status_json(self, me: FakeDrbdNode) -> str:
        peer = self.peer(me.name)
        connected = self.connected()
        conn = "Connected" if connected else ("Connecting" if me.wants_connection else "StandAlone")
        replication = "Established" if connected else "Off"
        if connected and (me.verifying or peer.verifying):
            replication = "VerifyS" if me.verifying else "VerifyT"
        out_of_sync = 0 if connected else (4 if me.generation != peer.generation else 0)
        data: list[dict[str, Any]] = [
            {
                "name": self.resource,
                "node-id": me.node_id,
                "role": me.role,
                "suspended": me.suspended,
                "suspended-fencing": me.suspended,
                "write-ordering": "flush",
                "devices": [
                    {
                        "volume": 0,
                        "minor": 0,
                        "disk-state": me.disk,
                        "client": False,
                        "quorum": True,
                        "size": self.size_kib,
                    }
                ],
                "connections": [
                    {
                        "peer-node-id": peer.node_id,
                        "name": peer.name,
                        "connection-state": conn,
                        "congested": False,
                        "peer-role": peer.role if connected else "Unknown",
                        "peer_devices": [
                            {
                                "volume": 0,
                                "replication-state": replication,
                                "peer-disk-state": peer.disk if connected else "DUnknown",
                                "peer-client": False,
                                "resync-suspended": "no",
                                "out-of-sync": out_of_sync,
                                "has-sync-details": False,
                                "has-online-verify-details": False,
                                "percent-in-sync": 100.0 if not out_of_sync else 99.99,
                            }
                        ],
                    }
                ],
            }
        ]
        return json.dumps(data, indent=2)

    def events2_dump(self, me: FakeDrbdNode, *, connecting: bool = False) -> list[str]:
        st = json.loads(self.status_json(me))[0]
        conn = st["connections"][0]
        pd = conn["peer_devices"][0]
        state = "Connecting" if connecting else conn["connection-state"]
        res, peer_id, pname = self.resource, conn["peer-node-id"], conn["name"]
        return [
            f"exists resource name:{res} role:{st['role']} "
            f"suspended:{'fencing' if me.suspended else 'no'} write-ordering:flush",
            f"exists connection name:{res} peer-node-id:{peer_id} conn-name:{pname} "
            f"connection:{state} role:{conn['peer-role']}",
            f"exists device name:{res} volume:0 minor:0 disk:{me.disk} client:no quorum:yes "
            f"size:{self.size_kib}",
            f"exists peer-device name:{res} peer-node-id:{peer_id} conn-name:{pname} volume:0 "
            f"replication:{'Off' if connecting else pd['replication-state']} "
            f"peer-disk:{pd['peer-disk-state']} out-of-sync:{pd['out-of-sync']}",
            "exists -",
        ]
