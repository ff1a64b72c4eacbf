"""One node's command line on a `FakeDrbdPair` (fake_drbd.py has what is emulated).

`FakeDrbdRunner` is the `CommandRunner` in `pair.runners[node]`: it records every call,
matches argv against what the node knows (`drbdadm` subcommands, `drbdsetup status`,
`get-gi` and `events2`, `dmesg`, drorch's epoch and net-options files) and answers with
DRBD's exit codes and error messages, changing the pair's state as DRBD would. Any
other command raises UnexpectedCommand.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from drorch.remote.base import CommandFailed, CommandResult, CommandRunner
from drorch.testing.runner import UnexpectedCommand

if TYPE_CHECKING:
    from drorch.testing.fake_drbd import FakeDrbdPair

EXIT_STATE = 11
EXIT_NO_UP_TO_DATE = 17


class FakeDrbdRunner(CommandRunner):
    """One node's view of a FakeDrbdPair."""

    def __init__(self, pair: FakeDrbdPair, node: str) -> None:
        self.pair = pair
        self.me = pair.nodes[node]

    def _result(
        self, argv: Sequence[str], rc: int = 0, out: str = "", err: str = ""
    ) -> CommandResult:
        return CommandResult(tuple(argv), rc, out, err)

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        input: str | None = None,
        check: bool = False,
    ) -> CommandResult:
        self.me.calls.append(tuple(argv))
        result = self._dispatch(list(argv))
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def _no_module(self, argv: Sequence[str]) -> CommandResult:
        return self._result(argv, 20, err="Could not connect to 'drbd' generic netlink family\n")

    def _dispatch(self, argv: list[str]) -> CommandResult:
        res = self.pair.resource
        if argv == ["drbdsetup", "status", res, "--json"]:
            if not self.pair.module_loaded:
                return self._no_module(argv)
            if not self.me.up:
                return self._result(argv, 10, err=f"{res}: No such resource\n")
            return self._result(argv, out=self.pair.status_json(self.me))
        if argv[:3] == ["drbdsetup", "get-gi", res] and len(argv) == 5:
            if not self.me.up:
                return self._result(argv, 10, err=f"{res}: No such resource\n")
            return self._result(argv, out=self.pair.gi(self.me))
        if len(argv) == 2 and argv[0] == "cat" and argv[1].endswith((".epoch", ".net")):
            if argv[1] in self.me.files:
                return self._result(argv, out=self.me.files[argv[1]])
            return self._result(argv, 1, err=f"cat: {argv[1]}: No such file or directory\n")
        if argv[:2] == ["sh", "-c"] and len(argv) == 7 and argv[5].endswith((".epoch", ".net")):
            self.me.files[argv[5]] = f"{argv[6]}\n"  # drorch's epoch / net-options files
            return self._result(argv)
        if argv == ["dmesg"]:
            return self._result(argv, out="")
        if argv[:1] == ["drbdadm"] and argv[-1] == res:
            if not self.pair.module_loaded:
                return self._result(
                    argv,
                    20,
                    err="Failed to modprobe drbd (No such file or directory)\n"
                    f"Command 'drbdsetup new-resource {res} {self.me.node_id}' terminated "
                    "with exit code 20\n",
                )
            return self._drbdadm(argv, argv[1], argv[2:-1])
        raise UnexpectedCommand(f"fake DRBD on {self.me.name} cannot run {argv}")

    def _fail(self, argv: Sequence[str], code: int, rc: int, text: str, cmd: str) -> CommandResult:
        return self._result(
            argv,
            rc,
            err=f"{self.pair.resource}: State change failed: ({code}) {text}\n"
            f"Command '{cmd}' terminated with exit code {rc}\n",
        )

    def _drbdadm(self, argv: list[str], op: str, opts: list[str]) -> CommandResult:
        pair = self.pair
        was_connected = pair.connected()
        result = self._drbdadm_op(argv, op, opts)
        pair.lose_connection(was_connected)
        return result

    def _drbdadm_op(self, argv: list[str], op: str, opts: list[str]) -> CommandResult:
        me, pair, res = self.me, self.pair, self.pair.resource
        peer = pair.peer(me.name)
        if op == "up":
            if me.up:
                return self._result(
                    argv,
                    10,
                    err=f"{res}: Failure: (161) Minor or volume exists already (delete it first)\n",
                )
            me.up, me.wants_connection = True, True
            pair.handshake()
        elif op == "down":
            if me.held_open:
                return self._fail(
                    argv, -12, EXIT_STATE, "Device is held open by someone", f"drbdsetup down {res}"
                )
            me.up, me.wants_connection, me.role = False, False, "Secondary"
            me.protocol, me.two_primaries = pair.protocol, False
        elif op == "primary":
            two = me.two_primaries and peer.two_primaries
            if pair.connected() and peer.role == "Primary" and not two:
                return self._fail(
                    argv,
                    -1,
                    EXIT_STATE,
                    "Multiple primaries not allowed by config",
                    f"drbdsetup primary {res}",
                )
            if me.disk != "UpToDate" and "--force" not in opts:
                return self._fail(
                    argv,
                    -2,
                    EXIT_NO_UP_TO_DATE,
                    "Need access to UpToDate data",
                    f"drbdsetup primary {res}",
                )
            if me.role != "Primary":
                me.role, me.disk = "Primary", "UpToDate"
                if not pair.connected():
                    pair.new_generation(me)
        elif op == "secondary":
            if me.held_open:
                return self._fail(
                    argv,
                    -12,
                    EXIT_STATE,
                    "Device is held open by someone",
                    f"drbdsetup secondary {res}",
                )
            me.role = "Secondary"
        elif op == "connect":
            me.wants_connection, me.split_brain = True, False
            me.discard_my_data = "--discard-my-data" in opts
            pair.handshake()
        elif op == "disconnect":
            me.wants_connection = False
        elif op == "verify":
            if not pair.connected():
                return self._fail(
                    argv,
                    -15,
                    EXIT_STATE,
                    "Need a connection to start verify or resync",
                    f"drbdsetup verify {res} {peer.node_id} 0",
                )
            me.verifying = True
        elif op == "invalidate":
            me.generation, me.history = peer.generation, set(peer.history)
        elif op == "net-options":
            return self._net_options(argv, opts)
        elif op in ("create-md", "adjust"):
            pass
        else:
            raise UnexpectedCommand(f"fake drbdadm cannot {op}")
        return self._result(argv)

    def _net_options(self, argv: list[str], opts: list[str]) -> CommandResult:
        """`--allow-two-primaries=yes|no`, `--protocol=A|C`; DRBD's own refusals."""
        me, res = self.me, self.pair.resource
        if not me.up:
            return self._result(argv, 10, err=f"{res}: No such resource\n")
        values = dict(o.removeprefix("--").split("=", 1) for o in opts if "=" in o)
        protocol = values.get("protocol", me.protocol)
        two = values.get("allow-two-primaries", "yes" if me.two_primaries else "no") == "yes"
        if two and protocol != "C":
            peer_id = self.pair.peer(me.name).node_id
            return self._result(
                argv,
                10,
                err=f"{res}: Failure: (139) Protocol C required\n"
                f"Command 'drbdsetup net-options {res} {peer_id}' terminated with exit code 10\n",
            )
        me.protocol, me.two_primaries = protocol, two
        return self._result(argv)

    def stream(self, argv: Sequence[str], *, timeout: float | None = None) -> Iterator[str]:
        self.me.calls.append(tuple(argv))
        res, me, pair = self.pair.resource, self.me, self.pair
        if list(argv[:2]) != ["drbdsetup", "events2"] or argv[-1] != res:
            raise UnexpectedCommand(f"fake DRBD on {me.name} cannot stream {list(argv)}")
        if not me.up:
            yield "exists -"
            return
        peer = pair.peer(me.name)
        if me.split_brain:
            yield from pair.events2_dump(me, connecting=True)
            yield (
                f"call helper name:{res} peer-node-id:{peer.node_id} conn-name:{peer.name} "
                "volume:0 helper:initial-split-brain"
            )
            yield (
                f"change connection name:{res} peer-node-id:{peer.node_id} conn-name:{peer.name} "
                "connection:StandAlone role:Unknown"
            )
            return
        yield from pair.events2_dump(me)
        if me.verifying:
            me.verifying = False
            yield (
                f"change peer-device name:{res} peer-node-id:{peer.node_id} "
                f"conn-name:{peer.name} volume:0 replication:Established out-of-sync:0"
            )
