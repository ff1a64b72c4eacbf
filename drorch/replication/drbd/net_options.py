"""DRBD 9 net options changed while running: the `DualPrimary` and `ModeSwitch`
capabilities of the DRBD driver (`drorch.replication.capabilities`).

    allow two primaries   drbdadm net-options --allow-two-primaries=yes RES  (both nodes)
    forbid them again     drbdadm net-options --allow-two-primaries=no RES   (both nodes)
    sync / async          drbdadm net-options --protocol=C|A RES

Allowing is refused unless the resource is Connected, both disks UpToDate and the mode
is sync (protocol C; DRBD itself refuses two primaries otherwise). Forbidding is refused
while both sides are Primary. Switching to async is refused while two primaries are
allowed.

`drbdsetup status --json` does not show net options, so the driver records what it set
in a small file next to the epoch file (`RES.net`, written the same durable way):
`allow-two-primaries=yes|no protocol=C|A`. That file is what `two_primaries_allowed()`
reads. It records intent: after `drbdadm down/up/adjust` the kernel is back at the
resource file's options while the file may still say yes; DRBD then refuses the second
promotion itself ("Multiple primaries not allowed by config"), which is the safe side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from drorch.durable import shell_write_command
from drorch.remote.base import CommandFailed, RunnerError
from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationError,
    ReplicationStatus,
    Role,
)
from drorch.replication.drbd.ops import Op, classify, drbd_message, drbdadm_argv
from drorch.replication.drbd.policy import Decision, Verdict, is_up
from drorch.replication.drbd.status_sources import DrbdUnreachable

if TYPE_CHECKING:
    from drorch.model.types import Node, Volume
    from drorch.remote.base import CommandRunner

PROTOCOL = {"sync": "C", "async": "A"}


def net_path(epoch_path: str) -> str:
    """`RES.net` beside `RES.epoch`."""
    return epoch_path.removesuffix(".epoch") + ".net"


def parse_net(text: str) -> dict[str, str]:
    """`key=value` words; anything else is ignored."""
    return dict(w.split("=", 1) for w in text.split() if "=" in w)


def decide_allow(st: ReplicationStatus, mode: str, allowed: bool) -> Decision:
    name = st.name
    if allowed:
        return Decision(Verdict.SKIP, f"two primaries are already allowed for {name}")
    if not is_up(st):
        return Decision(Verdict.REFUSE, f"{name} is not up on this node")
    if mode != "sync":
        return Decision(
            Verdict.REFUSE, f"{name} replicates {mode}: two primaries need sync (protocol C)"
        )
    if st.connection is not ConnState.CONNECTED:
        return Decision(
            Verdict.REFUSE,
            f"{name} is {st.connection.value}: two primaries need the peer connected",
        )
    if st.disk is not DiskState.UP_TO_DATE or st.peer_disk is not DiskState.UP_TO_DATE:
        return Decision(
            Verdict.REFUSE,
            f"{name}: disks are {st.disk.value}/{st.peer_disk.value}; two primaries need both "
            "UpToDate",
        )
    return Decision(
        Verdict.RUN,
        f"{name} is connected, in sync, protocol C: allow a second primary",
        ("--allow-two-primaries=yes",),
    )


def decide_forbid(st: ReplicationStatus, allowed: bool) -> Decision:
    name = st.name
    if not allowed:
        return Decision(Verdict.SKIP, f"two primaries are already forbidden for {name}")
    if st.role is Role.PRIMARY and st.peer_role is Role.PRIMARY:
        return Decision(
            Verdict.REFUSE, f"both sides are Primary for {name}: demote one before forbidding"
        )
    return Decision(
        Verdict.RUN, f"forbid a second primary for {name}", ("--allow-two-primaries=no",)
    )


def decide_mode(st: ReplicationStatus, current: str, want: str, allowed: bool) -> Decision:
    if want not in PROTOCOL:
        raise ValueError(f"mode must be sync or async, not {want!r}")
    name = st.name
    if current == want:
        return Decision(Verdict.SKIP, f"{name} already replicates {want}")
    if not is_up(st):
        return Decision(Verdict.REFUSE, f"{name} is not up on this node")
    if want != "sync" and allowed:
        return Decision(
            Verdict.REFUSE, f"two primaries are allowed for {name}: forbid them before async"
        )
    return Decision(
        Verdict.RUN,
        f"{name}: replicate {want} (protocol {PROTOCOL[want]})",
        (f"--protocol={PROTOCOL[want]}",),
    )


class NetOptions:
    """Mixed into `DrbdReplicator` (which provides the attributes and methods below).

    DRBD checks `allow-two-primaries` on both ends of the connection, so allowing and
    forbidding run on this node and on the peer (through the peer's runner, when the
    Environment has one), and each node's `RES.net` records it."""

    name: str
    mode: str
    config: str | None
    node: Node
    volume: Volume
    runner: CommandRunner
    runners: Mapping[str, CommandRunner]
    epoch_path: str
    log: list[str]

    if TYPE_CHECKING:

        def status(self) -> ReplicationStatus: ...
        def _decide(self, decision: Decision) -> bool: ...

    def _both(self) -> list[tuple[str, CommandRunner]]:
        peers = [n for n in self.volume.paths if n != self.node.name and n in self.runners]
        return [(self.node.name, self.runner), *((n, self.runners[n]) for n in peers)]

    def _net_options(self, where: str, runner: CommandRunner, *options: str) -> None:
        argv = drbdadm_argv(Op.NET_OPTIONS, self.name, *options, config=self.config)
        try:
            result = runner.run(argv, timeout=120.0)
        except RunnerError as exc:
            raise DrbdUnreachable(f"{where}: drbdadm net-options: {exc}") from exc
        outcome = classify(Op.NET_OPTIONS, result)
        self.log.append(f"{where}: drbdadm net-options {' '.join(options)}: {outcome.reason}")

    def _net(self) -> dict[str, str]:
        path = net_path(self.epoch_path)
        try:
            result = self.runner.run(["cat", path], timeout=15.0)
        except RunnerError as exc:
            raise DrbdUnreachable(f"reading {path}: {exc}") from exc
        if not result.ok:
            if "No such file" in result.stderr:
                return {}
            raise ReplicationError(f"reading {path}: {drbd_message(result)}")
        return parse_net(result.stdout)

    def _record(self, runner: CommandRunner, allowed: bool) -> None:
        path = net_path(self.epoch_path)
        line = f"allow-two-primaries={'yes' if allowed else 'no'} protocol={PROTOCOL[self.mode]}"
        try:
            runner.run(shell_write_command(path, line), timeout=15.0, check=True)
        except CommandFailed as exc:
            message = drbd_message(exc.result)
            raise ReplicationError(f"recording {line} in {path}: {message}") from exc
        except RunnerError as exc:
            raise DrbdUnreachable(f"recording {line} in {path}: {exc}") from exc
        self.log.append(f"recorded {line} in {path}")

    def two_primaries_allowed(self) -> bool:
        return self._net().get("allow-two-primaries") == "yes"

    def _two_primaries(self, decision: Decision, allowed: bool) -> None:
        if self._decide(decision):
            for where, runner in self._both():
                self._net_options(where, runner, *decision.options)
                self._record(runner, allowed)

    def allow_two_primaries(self) -> None:
        st = self.status()
        self._two_primaries(decide_allow(st, self.mode, self.two_primaries_allowed()), True)

    def forbid_two_primaries(self) -> None:
        st = self.status()
        self._two_primaries(decide_forbid(st, self.two_primaries_allowed()), False)

    def set_mode(self, mode: str, *, wait: bool = True) -> None:  # at once: wait is moot
        if mode not in PROTOCOL:
            raise ValueError(f"mode must be sync or async, not {mode!r}")
        st = self.status()
        allowed = mode != "sync" and st.mode != mode and self.two_primaries_allowed()
        decision = decide_mode(st, st.mode, mode, allowed)
        if self._decide(decision):
            self._net_options(self.node.name, self.runner, *decision.options)
            self.mode = mode
            self._record(self.runner, allowed)
