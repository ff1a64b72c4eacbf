"""`DrbdReplicator`: the `Replicator` seam over drbdadm/drbdsetup on one node.

Every command goes through `env.runners[node.name]` (LocalRunner for `address: local`,
SSH otherwise). Each operation observes first (`drbdsetup status --json`), asks a pure
decision in `policy.py`, and only then runs drbdadm; results are classified in `ops.py`.
Waiting (connect, resolve, verify) follows `drbdsetup events2` instead of polling
(`waits.py`).

DRBD has no notion of drorch's quorum epoch: the driver records the epoch of each
promotion in a file on the node (`epoch_store.py`) and refuses an older one with
StaleEpoch, whichever process asks; a new primary at an epoch equal to the highest
recorded is refused too (two primaries would share the fencing token). A primary asked
again at its own epoch, or a second primary joining (two primaries allowed), is not a new
promotion. DRBD's own resource-level fencing is the fence-peer
handler (`fence_peer.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from drorch.remote.base import RunnerError
from drorch.replication.base import (
    ConnState,
    ReplicationError,
    ReplicationStatus,
    Replicator,
    Role,
    StaleEpoch,
    UnsafeOperation,
)
from drorch.replication.drbd import epoch_store, policy
from drorch.replication.drbd.epoch_store import epoch_path, read_epoch, write_epoch
from drorch.replication.drbd.events2 import follow
from drorch.replication.drbd.net_options import NetOptions
from drorch.replication.drbd.ops import Op, Outcome, classify, drbd_message, drbdadm_argv
from drorch.replication.drbd.state import parse_gi
from drorch.replication.drbd.status_sources import DrbdUnreachable, read_status
from drorch.replication.drbd.waits import Waits

if TYPE_CHECKING:
    from drorch.environment import Environment
    from drorch.model.types import Node, Volume


class DrbdReplicator(NetOptions, Waits, Replicator):
    """One DRBD resource (named like the volume) on one node (+ net_options.py, waits.py)."""

    def __init__(
        self,
        volume: Volume,
        node: Node,
        env: Environment,
        *,
        config: str | None = None,
        state_dir: str | None = None,
        connect_wait: float = 10.0,
        verify_wait: float | None = None,
    ) -> None:
        self.name = volume.name
        self.volume = volume
        self.node = node
        self.runner = env.runners[node.name]
        self.runners = env.runners  # the peer's too: two primaries are set on both ends
        self.config = config
        self.mode = volume.mode.value
        self.connect_wait = connect_wait
        # online verify reads the whole disk; allow 20 MiB/s and at least a minute
        self.verify_wait = verify_wait or max(60.0, volume.size / (20 * 1024 * 1024))
        self.epoch = 0  # the highest epoch seen (memory and the node's epoch file)
        self.epoch_path = epoch_path(state_dir or epoch_store.state_dir(), volume.name)
        self.log: list[str] = []  # every decision taken, with its reason
        # called with each status seen while waiting (resync/verify progress for a CLI bar)
        self.on_progress: Callable[[ReplicationStatus], None] | None = None

    # -- observing -------------------------------------------------------------------

    def status(self) -> ReplicationStatus:
        st = replace(read_status(self.runner, self.volume, "json"), mode=self.mode)
        if not policy.is_up(st):
            return replace(st, epoch=self.epoch)
        self.epoch = max(self.epoch, read_epoch(self.runner, self.epoch_path))
        st = replace(st, epoch=self.epoch)
        generation, problem = self._generation(st)
        if problem:
            return replace(st, extra=MappingProxyType({**st.extra, "generation_error": problem}))
        return replace(st, generation=MappingProxyType(generation))

    def _generation(self, st: ReplicationStatus) -> tuple[dict[str, Any], str | None]:
        """DRBD's data generation identifiers (UUIDs) towards the peer."""
        peer_id = st.extra.get("details", {}).get("connection.peer-node-id")
        if peer_id is None:
            return {}, None
        argv = ["drbdsetup", "get-gi", self.name, str(peer_id), "0"]
        try:
            result = self.runner.run(argv, timeout=15.0)
        except RunnerError as exc:
            return {}, f"{' '.join(argv)}: {exc}"
        generation = parse_gi(result.stdout) if result.ok else {}
        if not generation:
            return {}, f"{' '.join(argv)} exited {result.returncode}: {drbd_message(result)}"
        return generation, None

    def watch(self, timeout: float | None = None) -> Generator[ReplicationStatus, None, None]:
        """The status each time DRBD reports a change (`drbdsetup events2`), without
        polling, for an agent to react to. Closing the generator stops drbdsetup; the
        runner's CommandTimeout ends it after `timeout` seconds."""
        stream = follow(self.runner, self.name, self.mode, timeout=timeout)
        try:
            for st in stream:
                yield replace(st, epoch=self.epoch)
        finally:
            stream.close()

    # -- acting ----------------------------------------------------------------------

    def _run(self, op: Op, *options: str, input: str | None = None) -> Outcome:
        argv = drbdadm_argv(op, self.name, *options, config=self.config)
        try:
            result = self.runner.run(argv, timeout=120.0, input=input)
        except RunnerError as exc:
            raise DrbdUnreachable(f"{self.node.name}: drbdadm {op.value}: {exc}") from exc
        outcome = classify(op, result)
        self.log.append(f"drbdadm {op.value}: {outcome.reason}")
        return outcome

    def _decide(self, decision: policy.Decision) -> bool:
        """Record the decision; True when the operation must run."""
        self.log.append(f"{decision.verdict.value}: {decision.reason}")
        if decision.verdict is policy.Verdict.REFUSE:
            raise ReplicationError(decision.reason)
        if decision.verdict is policy.Verdict.UNSAFE:
            raise UnsafeOperation(decision.reason)
        return decision.verdict is policy.Verdict.RUN

    def up(self) -> None:
        if self._decide(policy.decide_up(self.status())):
            self._run(Op.UP)

    def down(self) -> None:
        if self._decide(policy.decide_down(self.status())):
            self._run(Op.DOWN)

    def promote(
        self, epoch: int | None = None, *, force: bool = False, accept_data_loss: bool = False
    ) -> None:
        if epoch is not None and epoch < self.epoch:
            raise self._stale(epoch, self.epoch)
        st = self.status()  # also reads the node's epoch file
        two = st.peer_role is Role.PRIMARY and self.two_primaries_allowed()
        seen = max(self.epoch, st.epoch)
        new = st.role is not Role.PRIMARY and not two  # a second primary shares the epoch
        if epoch is None and new:
            epoch = seen + 1  # no epoch given: one above any seen here, never a reused one
        if epoch is not None and (epoch < seen or (new and epoch == seen)):
            raise self._stale(epoch, seen)
        decision = policy.decide_promote(
            st, force=force, accept_data_loss=accept_data_loss, two_primaries=two
        )
        if self._decide(decision):
            self._run(Op.PRIMARY, *decision.options)
        if epoch is not None and epoch > st.epoch:
            write_epoch(self.runner, self.epoch_path, epoch)
            self.log.append(f"recorded epoch {epoch} in {self.epoch_path}")
        if epoch is not None:
            self.epoch = max(self.epoch, epoch)

    def _stale(self, epoch: int, seen: int) -> StaleEpoch:
        return epoch_store.stale_epoch(self.name, self.node.name, self.epoch_path, epoch, seen)

    def demote(self) -> None:
        if self._decide(policy.decide_demote(self.status())):
            self._run(Op.SECONDARY)

    def connect(self) -> None:
        if self._decide(policy.decide_connect(self.status())):
            self._run(Op.CONNECT)
            self._await_connection()

    def disconnect(self) -> None:
        if self._decide(policy.decide_disconnect(self.status())):
            self._run(Op.DISCONNECT)

    def resolve_discard_local(self) -> None:
        st = self.status()
        decision = policy.decide_discard_local(st)
        if not self._decide(decision):
            return
        if st.connection is not ConnState.STANDALONE:
            self._run(Op.DISCONNECT)
        self._run(Op.SECONDARY)
        self._run(Op.CONNECT, *decision.options)
        self._await_connection()

    def plan(
        self, action: str, *, force: bool = False, accept_data_loss: bool = False
    ) -> tuple[policy.Decision, list[str] | None]:
        """Check mode: observe, decide, and return the decision with the drbdadm command
        the action would run (None when it would run nothing). Changes nothing."""
        st = self.status()
        decisions: dict[str, tuple[Callable[[], policy.Decision], Op]] = {
            "up": (lambda: policy.decide_up(st), Op.UP),
            "down": (lambda: policy.decide_down(st), Op.DOWN),
            "primary": (
                lambda: policy.decide_promote(st, force=force, accept_data_loss=accept_data_loss),
                Op.PRIMARY,
            ),
            "secondary": (lambda: policy.decide_demote(st), Op.SECONDARY),
            "connect": (lambda: policy.decide_connect(st), Op.CONNECT),
            "disconnect": (lambda: policy.decide_disconnect(st), Op.DISCONNECT),
            "verify": (lambda: policy.decide_verify(st), Op.VERIFY),
            "invalidate": (lambda: policy.decide_invalidate(st), Op.INVALIDATE),
            "resolve": (lambda: policy.decide_discard_local(st), Op.CONNECT),
        }
        decide, op = decisions[action]
        decision = decide()
        if action == "invalidate" and "--discard-my-data" in decision.options:
            op = Op.CONNECT  # the split-brain form (after drbdadm secondary)
        if decision.verdict is not policy.Verdict.RUN:
            return decision, None
        return decision, drbdadm_argv(op, self.name, *decision.options, config=self.config)

    def invalidate(self) -> None:
        """Throw away this node's data of the volume: connected, resync all of it from the
        peer (drbdadm invalidate); StandAlone after a split brain, discard this node's
        changes and reconnect as the peer's SyncTarget (connect --discard-my-data)."""
        st = self.status()
        decision = policy.decide_invalidate(st)
        if not self._decide(decision):
            return
        if "--discard-my-data" in decision.options:
            self._run(Op.SECONDARY)
            self._run(Op.CONNECT, *decision.options)
            self._await_connection()
        else:
            self._run(Op.INVALIDATE)

    def plan_create_md(self, *, force: bool = False, accept_data_loss: bool = False) -> list[str]:
        """Check mode of `create_md`: the same refusal, and the command it would run."""
        if force and not accept_data_loss:
            raise UnsafeOperation("create-md --force also needs --accept-data-loss")
        return drbdadm_argv(
            Op.CREATE_MD, self.name, *(["--force"] if force else []), config=self.config
        )

    def create_md(self, *, force: bool = False, accept_data_loss: bool = False) -> None:
        """Write fresh DRBD metadata. Existing metadata is kept (UnsafeOperation) unless
        forced with data loss accepted; drbdmeta's confirmation prompt is answered no."""
        self.plan_create_md(force=force, accept_data_loss=accept_data_loss)
        if force:
            self._run(Op.CREATE_MD, "--force")
        else:
            self._run(Op.CREATE_MD, input="no\n")

    def adjust(self) -> None:
        """Apply the resource file to the running resource (after a config change)."""
        self._run(Op.ADJUST)

    def plan_adjust(self) -> tuple[list[str], list[str]]:
        """Check mode of `adjust`: `drbdadm -d adjust` on the node, which fails where the
        real one would (the same typed errors); the command and the steps it prints."""
        argv = drbdadm_argv(Op.ADJUST, self.name, config=self.config)
        try:
            result = self.runner.run([argv[0], "-d", *argv[1:]], timeout=120.0)
        except RunnerError as exc:
            raise DrbdUnreachable(f"{self.node.name}: drbdadm -d adjust: {exc}") from exc
        classify(Op.ADJUST, result)
        return argv, [ln for ln in result.stdout.splitlines() if ln.strip()]
