"""`SimReplicator`: a simulated replicated volume for the demo lab (`hypervisor.driver: sim`).

Both replicas of a volume live in one JSON file under the cluster's sim state dir
(`<state_dir>/replication/<volume>.json`), so every `drorch` invocation and every node's
replicator sees the same state. Data moves instantly; what is simulated faithfully is the
safety logic an operator relies on: who is primary, which disk is UpToDate, whether the
histories diverged (split brain), and the fencing epoch.

Histories: each replica has a generation `gen`; `base` is the generation both had when
last connected. A replica that changes while disconnected (a write or a promotion) gets a
new `gen`. On reconnect, if only one side changed it becomes the sync source; if both
changed, that is split brain and the volume stays StandAlone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationError,
    ReplicationStatus,
    Replicator,
    Role,
    SplitBrain,
    StaleEpoch,
    UnsafeOperation,
    VerifyResult,
)

if TYPE_CHECKING:
    from drorch.environment import Environment
    from drorch.model.types import Node, Volume

State = dict[str, Any]
DEFAULT_STATE_DIR = ".drorch-state"


def resolve_state_dir(env: Environment, configured: str) -> Path:
    """`hypervisor.state_dir` resolved against the config file's directory (env.base_dir)."""
    p = Path(configured)
    return p if p.is_absolute() else env.base_dir / p


class SimReplicator(Replicator):
    """One replica of `volume` on `node`.

    `state_dir` defaults to `<env.base_dir>/.drorch-state`. A volume seen for the first
    time starts connected and UpToDate on both sides, primary on `primary_node` (or on
    neither when it is None)."""

    def __init__(
        self,
        volume: Volume,
        node: Node,
        env: Environment,
        *,
        state_dir: Path | None = None,
        primary_node: str | None = None,
        sites: dict[str, str] | None = None,
    ) -> None:
        if node.name not in volume.paths:
            raise ReplicationError(f"volume {volume.name} has no replica on node {node.name}")
        peers = [n for n in volume.paths if n != node.name]
        if len(peers) != 1:
            raise ReplicationError(f"volume {volume.name} needs exactly two replicas")
        self.name = volume.name
        self.volume = volume
        self.node = node.name
        self.peer = peers[0]
        self._primary_node = primary_node
        directory = state_dir or resolve_state_dir(env, DEFAULT_STATE_DIR)
        self.world = directory
        self.path = directory / "replication" / f"{volume.name}.json"
        self.sites = dict(sites or {})  # node -> site, for the simulated faults

    # -- persistence -------------------------------------------------------------------

    def _initial(self) -> State:
        def replica(name: str) -> State:
            role = Role.PRIMARY if name == self._primary_node else Role.SECONDARY
            return {"role": role.value, "up": True, "want_connect": True,
                    "disk": DiskState.UP_TO_DATE.value, "gen": 1}  # fmt: skip

        return {
            "volume": self.name,
            "base": 1,
            "next_gen": 2,
            "epoch": 0,
            "out_of_sync_bytes": 0,
            "replicas": {self.node: replica(self.node), self.peer: replica(self.peer)},
        }

    @contextmanager
    def _state(self, *, write: bool) -> Iterator[State]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # short critical sections; readers may initialise
            try:
                state = json.loads(self.path.read_text()) if self.path.exists() else None
            except (OSError, ValueError) as exc:
                raise ReplicationError(f"sim state {self.path} is unreadable: {exc}") from exc
            if state is None:
                state = self._initial()
                write = True  # the first observer fixes the initial state for everyone
            try:
                yield state
            except SplitBrain:
                self._save(state)  # the volume stays StandAlone: that is the new state
                raise
            if write:
                self._save(state)

    def _save(self, state: State) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        os.replace(tmp, self.path)

    # -- derived views -----------------------------------------------------------------

    def _site_down(self, node: str) -> bool:
        site = self.sites.get(node)
        return site is not None and (self.world / f"sim-{site}.down").exists()

    def _link_cut(self) -> bool:
        """A simulated partition, or either side's site powered off (`drorch sim`)."""
        return (
            (self.world / "sim-partition").exists()
            or self._site_down(self.node)
            or self._site_down(self.peer)
        )

    def _connected(self, state: State) -> bool:
        if self._link_cut():
            return False
        return all(r["up"] and r["want_connect"] for r in state["replicas"].values())

    def _conn(self, state: State) -> ConnState:
        me = state["replicas"][self.node]
        if self._connected(state):
            return ConnState.CONNECTED
        return ConnState.CONNECTING if me["up"] and me["want_connect"] else ConnState.STANDALONE

    def status(self) -> ReplicationStatus:
        if self._site_down(self.node):
            raise ReplicationError(
                f"{self.name}@{self.node}: unreachable: site {self.sites[self.node]} is powered"
                " off (simulated)"
            )
        with self._state(write=False) as state:
            me, peer = state["replicas"][self.node], state["replicas"][self.peer]
            connected = self._connected(state)
            oos = 0 if connected else int(state["out_of_sync_bytes"])
            return ReplicationStatus(
                name=self.name,
                role=Role(me["role"]) if me["up"] else Role.UNKNOWN,
                disk=DiskState(me["disk"]) if me["up"] else DiskState.DISKLESS,
                connection=self._conn(state),
                mode=str(state.get("mode") or self.volume.mode.value),
                peer_disk=DiskState(peer["disk"]) if connected else DiskState.UNKNOWN,
                peer_role=Role(peer["role"]) if connected else Role.UNKNOWN,
                out_of_sync_bytes=oos,
                percent_in_sync=100.0 * (1 - oos / self.volume.size) if self.volume.size else 0,
                epoch=int(state["epoch"]),
                generation={"current": me["gen"], "base": state["base"]},
                extra={
                    "driver": "sim",
                    "node": self.node,
                    "peer": self.peer,
                    "split_brain": state.get("split_brain"),
                    "two_primaries": bool(state.get("two_primaries")),
                },
            )

    # -- state changes -----------------------------------------------------------------

    def _diverge(self, state: State, me: State) -> None:
        """This replica changes while disconnected: start a new generation once."""
        if me["gen"] == state["base"]:
            me["gen"] = state["next_gen"]
            state["next_gen"] += 1

    def up(self) -> None:
        with self._state(write=True) as state:
            me = state["replicas"][self.node]
            if not me["up"]:
                me["up"], me["want_connect"] = True, True
                self._maybe_resync(state)

    def down(self) -> None:
        with self._state(write=True) as state:
            me = state["replicas"][self.node]
            if me["role"] == Role.PRIMARY.value:
                raise ReplicationError(
                    f"{self.name}: refusing to take down a primary; demote first"
                )
            me["up"] = False

    def promote(
        self, epoch: int | None = None, *, force: bool = False, accept_data_loss: bool = False
    ) -> None:
        with self._state(write=True) as state:
            me, peer = state["replicas"][self.node], state["replicas"][self.peer]
            if not me["up"]:
                raise ReplicationError(f"{self.name}: cannot promote on {self.node}: it is down")
            if epoch is not None and epoch < state["epoch"]:
                raise StaleEpoch(
                    f"{self.name}: epoch {epoch} is older than epoch {state['epoch']} already"
                    f" seen: a promotion needs an epoch greater than {state['epoch']}"
                )
            dual = bool(state.get("two_primaries")) and me["role"] != Role.PRIMARY.value
            if self._connected(state) and peer["role"] == Role.PRIMARY.value and not dual:
                raise ReplicationError(
                    f"{self.name}: peer {self.peer} is primary; demote it before promoting"
                    f" {self.node}"
                )
            joins = dual and self._connected(state) and peer["role"] == Role.PRIMARY.value
            new = me["role"] != Role.PRIMARY.value and not joins
            if new and epoch is not None and epoch == state["epoch"]:
                # as pyrepl: a new primary takes an epoch no primary had (equal is reuse)
                raise StaleEpoch(
                    f"{self.name}: epoch {epoch} was already seen: a promotion needs an epoch"
                    f" greater than {state['epoch']}"
                )
            if me["disk"] != DiskState.UP_TO_DATE.value:
                if not (force and accept_data_loss):
                    raise UnsafeOperation(
                        f"{self.name}: local disk on {self.node} is {me['disk']}, not UpToDate;"
                        " promoting would serve stale or partial data (force with"
                        " accept_data_loss to override)"
                    )
                me["disk"] = DiskState.UP_TO_DATE.value
                self._diverge(state, me)
            if not self._connected(state):
                self._diverge(state, me)
            me["role"] = Role.PRIMARY.value
            if epoch is None and new:
                epoch = int(state["epoch"]) + 1  # none given: never a reused one (as pyrepl)
            if epoch is not None:
                state["epoch"] = epoch

    # -- optional capabilities (drorch.replication.capabilities) -------------------------

    def two_primaries_allowed(self) -> bool:
        with self._state(write=False) as state:
            return bool(state.get("two_primaries"))

    def allow_two_primaries(self) -> None:
        with self._state(write=True) as state:
            mode = str(state.get("mode") or self.volume.mode.value)
            if mode != "sync":
                raise ReplicationError(
                    f"{self.name}: two primaries need sync replication (the volume is {mode})"
                )
            if not self._connected(state):
                raise ReplicationError(
                    f"{self.name}: two primaries need the peer {self.peer} connected"
                )
            state["two_primaries"] = True

    def forbid_two_primaries(self) -> None:
        with self._state(write=True) as state:
            roles = [r["role"] for r in state["replicas"].values()]
            if roles.count(Role.PRIMARY.value) > 1:
                raise ReplicationError(
                    f"{self.name}: both {self.node} and {self.peer} are primary; demote one"
                    " before forbidding two primaries"
                )
            state["two_primaries"] = False

    def set_mode(self, mode: str, *, wait: bool = True) -> None:  # at once: wait is moot
        if mode not in ("sync", "async"):
            raise ValueError(f"replication mode must be sync or async, not {mode!r}")
        with self._state(write=True) as state:
            if mode == "async" and state.get("two_primaries"):
                raise ReplicationError(f"{self.name}: two primaries are allowed; forbid first")
            state["mode"] = mode

    def demote(self) -> None:
        with self._state(write=True) as state:
            state["replicas"][self.node]["role"] = Role.SECONDARY.value

    def connect(self) -> None:
        with self._state(write=True) as state:
            me = state["replicas"][self.node]
            if not me["up"]:
                raise ReplicationError(f"{self.name}: {self.node} is down; run up first")
            me["want_connect"] = True
            self._maybe_resync(state)

    def _maybe_resync(self, state: State) -> None:
        """Called when both sides may now be connected: resync or detect split brain."""
        if not self._connected(state):
            return
        me, peer = state["replicas"][self.node], state["replicas"][self.peer]
        me_changed, peer_changed = me["gen"] != state["base"], peer["gen"] != state["base"]
        if me_changed and peer_changed and me["gen"] != peer["gen"]:
            me["want_connect"] = peer["want_connect"] = False  # both drop to StandAlone
            mine = {"current": me["gen"], "base": state["base"]}
            theirs = {"current": peer["gen"], "base": state["base"]}
            # remembered (as pyrepl does) so status can tell it from a plain disconnect
            state["split_brain"] = {self.node: mine, self.peer: theirs}
            raise SplitBrain(
                f"{self.name}: split brain: both {self.node} and {self.peer} changed while"
                " disconnected; discard one side with resolve_discard_local",
                mine,
                theirs,
            )
        source, target = (me, peer) if me_changed else (peer, me)
        state["split_brain"] = None
        target["gen"] = source["gen"]
        target["disk"] = source["disk"]
        state["base"] = source["gen"]
        state["out_of_sync_bytes"] = 0

    def disconnect(self) -> None:
        with self._state(write=True) as state:
            state["replicas"][self.node]["want_connect"] = False

    def verify(self) -> VerifyResult:
        with self._state(write=False) as state:
            if not self._connected(state):
                raise ReplicationError(f"{self.name}: verify needs a connection to {self.peer}")
        region = self.volume.pyrepl.region_size
        return VerifyResult(-(-self.volume.size // region), (), region)

    def resolve_discard_local(self) -> None:
        with self._state(write=True) as state:
            me, peer = state["replicas"][self.node], state["replicas"][self.peer]
            if me["role"] == Role.PRIMARY.value:
                raise ReplicationError(
                    f"{self.name}: {self.node} is primary; demote it before discarding its data"
                )
            state["base"] = peer["gen"]
            me["gen"] = peer["gen"]
            me["want_connect"] = True
            state["split_brain"] = None
            self._maybe_resync(state)

    # -- simulation hooks (not part of the Replicator seam) ----------------------------

    def rebooted(self) -> None:
        """The node came back after a power loss: its replica is up and Secondary (a
        rebooted node never comes back primary), and reconnects if it can."""
        with self._state(write=True) as state:
            me = state["replicas"][self.node]
            me["role"], me["up"], me["want_connect"] = Role.SECONDARY.value, True, True
            self._maybe_resync_quietly(state)

    def _maybe_resync_quietly(self, state: State) -> None:
        with contextlib.suppress(SplitBrain):  # recorded in the state; status shows it
            self._maybe_resync(state)

    def write(self, nbytes: int) -> None:
        """Simulate the primary writing `nbytes`. While disconnected the peer falls behind
        without knowing it (its own disk still reads UpToDate, as in DRBD without a fence
        handler); the bytes count as out of sync and the histories diverge."""
        with self._state(write=True) as state:
            me = state["replicas"][self.node]
            if me["role"] != Role.PRIMARY.value:
                raise ReplicationError(f"{self.name}: only the primary writes")
            if not self._connected(state):
                self._diverge(state, me)
                state["out_of_sync_bytes"] = min(
                    self.volume.size, int(state["out_of_sync_bytes"]) + nbytes
                )

    def outdate(self) -> None:
        """Mark this replica Outdated, as `drbdadm outdate` or a fence-peer handler does
        when the primary continues without it. Refused while primary."""
        with self._state(write=True) as state:
            me = state["replicas"][self.node]
            if me["role"] == Role.PRIMARY.value:
                raise ReplicationError(f"{self.name}: cannot outdate the primary {self.node}")
            me["disk"] = DiskState.OUTDATED.value
