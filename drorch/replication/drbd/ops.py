"""DRBD operations through a node's `CommandRunner`, with per-operation error rules.

Each operation is one `drbdadm` call. Its result is classified by `classify()`: success,
*benign* (the state the operator asked for already holds, e.g. `disconnect` on a
StandAlone resource), or a typed `DrbdError` carrying drbdadm's own message.

The messages and exit codes are drbdsetup's (drbd-utils 9): a state change the kernel
refuses prints `State change failed: (N) TEXT` and exits 11, except "Need access to
UpToDate data" (17); netlink errors print `Failure: (N) TEXT` and exit 10; a missing
kernel module is exit 20 ("Could not connect to 'drbd' generic netlink family", or
drbdadm's "Failed to modprobe drbd"). drbdadm repeats the failing command as
`Command 'drbdsetup ...' terminated with exit code N` and exits with the same N.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from drorch.remote.base import CommandResult, CommandRunner
from drorch.replication.base import ReplicationError, UnsafeOperation

EXIT_FAILURE = 10  # drbdsetup: "Failure: (N) ..." from the kernel (netlink error code)
EXIT_STATE_CHANGE = 11  # drbdsetup: "State change failed: (N) ..."
EXIT_NO_UP_TO_DATE = 17  # SS_NO_UP_TO_DATE_DISK
EXIT_LOWER_THAN_OUTDATED = 18
EXIT_NO_LOCAL_DISK = 19
EXIT_NO_MODULE = 20  # netlink family missing: the drbd kernel module is not loaded


class Op(StrEnum):
    UP = "up"
    DOWN = "down"
    PRIMARY = "primary"
    SECONDARY = "secondary"
    CONNECT = "connect"
    DISCONNECT = "disconnect"
    VERIFY = "verify"
    INVALIDATE = "invalidate"
    CREATE_MD = "create-md"
    ADJUST = "adjust"
    NET_OPTIONS = "net-options"  # change a connection's net options while running
    STATUS = "status"  # drbdsetup status: only the common rules apply


class DrbdError(ReplicationError):
    """A drbdadm/drbdsetup call failed. `message` is drbdadm's own text."""

    def __init__(self, op: str, result: CommandResult, reason: str) -> None:
        self.op = op
        self.argv = result.argv
        self.returncode = result.returncode
        self.message = drbd_message(result)
        self.reason = reason
        super().__init__(f"drbd {op}: {reason} (exit {result.returncode}: {self.message})")


class DrbdModuleMissing(DrbdError):
    """The drbd kernel module is not loaded on the node (and could not be loaded)."""


class DrbdPeerPrimary(DrbdError):
    """Promotion refused: the peer is Primary and dual-primary is not allowed."""


class DrbdDiskNotUpToDate(DrbdError, UnsafeOperation):
    """Promotion refused: no UpToDate data is reachable. Only `--force` (with data loss
    accepted) overrides it."""


class DrbdPeerNotOutdated(DrbdError):
    """Promotion refused by fencing: the peer may still be Primary and is not Outdated
    (the fence-peer handler did not confirm)."""


class DrbdNoQuorum(DrbdError):
    """Refused because DRBD's own quorum is lost on this node."""


class DrbdDeviceInUse(DrbdError):
    """Demote/down refused: something holds the DRBD device open (a VM, a mount)."""


class DrbdNotConnected(DrbdError):
    """The operation needs a connection to the peer (verify, invalidate)."""


class DrbdDiskless(DrbdError):
    """The operation needs a local disk and the node is Diskless."""


class DrbdConfigError(DrbdError):
    """drbdadm rejected the configuration (resource unknown for this host, parse error,
    an address that is not on this host)."""


class DrbdMetadataExists(DrbdError, UnsafeOperation):
    """create-md found existing metadata (or data) that it would overwrite."""


@dataclass(frozen=True)
class Rule:
    """Match drbdadm's message (substring) and optionally its exit code."""

    text: str
    error: type[DrbdError] | None  # None: benign, the requested state already holds
    reason: str
    code: int | None = None


# Rules that apply to every operation (checked after the operation's own rules).
COMMON: tuple[Rule, ...] = (
    Rule("generic netlink family", DrbdModuleMissing, "the drbd kernel module is not loaded"),
    Rule("Failed to modprobe drbd", DrbdModuleMissing, "the drbd kernel module is not loaded"),
    Rule("Module drbd not found", DrbdModuleMissing, "the drbd kernel module is not installed"),
    Rule("not defined in your config", DrbdConfigError, "the resource is not configured here"),
    Rule("Parse error", DrbdConfigError, "drbdadm cannot parse the resource file"),
    Rule("not found on this host", DrbdConfigError, "the replication address is not local"),
    Rule("No quorum", DrbdNoQuorum, "DRBD quorum is lost on this node"),
    Rule("Device is diskless", DrbdDiskless, "this node has no local disk"),
    Rule("Need a connection", DrbdNotConnected, "the peer is not connected"),
)

RULES: dict[Op, tuple[Rule, ...]] = {
    Op.UP: (
        Rule("Minor or volume exists already", None, "already up"),
        Rule("Already exists", None, "already up"),
    ),
    Op.DOWN: (
        Rule("Device is held open by someone", DrbdDeviceInUse, "the device is in use"),
        Rule("Unknown resource", None, "already down"),
        Rule("No such resource", None, "already down"),
    ),
    Op.PRIMARY: (
        Rule(
            "Multiple primaries not allowed",
            DrbdPeerPrimary,
            "the peer is still Primary; demote it first",
        ),
        Rule(
            "Need access to UpToDate data",
            DrbdDiskNotUpToDate,
            "no UpToDate data: promoting would serve stale or inconsistent data",
        ),
        Rule(
            "Refusing to be Primary while peer is not outdated",
            DrbdPeerNotOutdated,
            "fencing: the peer is not known to be Outdated",
        ),
        Rule(
            "Other vol primary on peer",
            DrbdPeerPrimary,
            "the peer is Primary on another volume of this resource",
        ),
    ),
    Op.SECONDARY: (
        Rule("Device is held open by someone", DrbdDeviceInUse, "the device is in use"),
    ),
    Op.CONNECT: (
        Rule("Device has a net-config", None, "already connected or connecting"),
        Rule("already in use", None, "already connected or connecting"),
    ),
    Op.DISCONNECT: (
        Rule("Can not disconnect a StandAlone device", None, "already StandAlone"),
        Rule("Unknown connection", None, "already StandAlone"),
    ),
    Op.VERIFY: (
        Rule("already active", None, "a verify or resync is already running"),
        Rule("Can not start OV/resync", None, "a verify or resync is already running"),
    ),
    Op.INVALIDATE: (
        Rule(
            "Can not start OV/resync",
            DrbdError,
            "a resync is already running; wait for it to finish",
        ),
        Rule(
            "Can not resync without remote disk",
            DrbdNotConnected,
            "the peer has no disk to resync from",
        ),
    ),
    Op.CREATE_MD: (
        Rule("already in place", DrbdMetadataExists, "valid DRBD metadata already exists"),
        Rule(
            "Operation refused",
            DrbdMetadataExists,
            "the disk holds data (e.g. a filesystem) that internal metadata would truncate",
        ),
        Rule("Operation canceled", DrbdMetadataExists, "create-md would destroy existing data"),
        Rule("Operation cancelled", DrbdMetadataExists, "create-md would destroy existing data"),
    ),
    Op.ADJUST: (),
    Op.NET_OPTIONS: (
        Rule("Protocol C required", DrbdError, "two primaries need protocol C (sync)"),
        Rule(
            "requires protocol version", DrbdError, "the peer's DRBD is too old to change it live"
        ),
    ),
    Op.STATUS: (),
}

# Generic exit-code rules, used when no message rule matched.
BY_CODE: dict[int, tuple[type[DrbdError], str]] = {
    EXIT_NO_MODULE: (DrbdModuleMissing, "the drbd kernel module is not loaded"),
    EXIT_NO_UP_TO_DATE: (DrbdDiskNotUpToDate, "no UpToDate data is reachable"),
    EXIT_NO_LOCAL_DISK: (DrbdDiskless, "this node has no local disk"),
}


def drbd_message(result: CommandResult) -> str:
    """drbdadm's message without the noise of missing helper tools."""
    text = result.stderr.strip() or result.stdout.strip()
    lines = [
        ln
        for ln in text.splitlines()
        if ln.strip() and "modinfo: not found" not in ln and "modprobe: not found" not in ln
    ]
    return "\n".join(lines) or "(no output)"


@dataclass(frozen=True)
class Outcome:
    """What an operation did: `changed` is False when the state already held."""

    op: Op
    changed: bool
    reason: str
    result: CommandResult


def classify(op: Op, result: CommandResult) -> Outcome:
    """Success, benign, or raise the typed error with drbdadm's message."""
    if result.ok:
        return Outcome(op, True, "done", result)
    text = f"{result.stderr}\n{result.stdout}"
    for rule in (*RULES[op], *COMMON):
        if rule.text in text and (rule.code is None or rule.code == result.returncode):
            if rule.error is None:
                return Outcome(op, False, rule.reason, result)
            raise rule.error(op.value, result, rule.reason)
    if result.returncode in BY_CODE:
        cls, reason = BY_CODE[result.returncode]
        raise cls(op.value, result, reason)
    raise DrbdError(op.value, result, f"drbdadm {op.value} failed")


def drbdadm_argv(op: Op, resource: str, *options: str, config: str | None = None) -> list[str]:
    """`drbdadm [-c CONFIG] OP [OPTIONS] RESOURCE`."""
    argv = ["drbdadm"]
    if config:
        argv += ["-c", config]
    return [*argv, op.value, *options, resource]


def run_op(
    runner: CommandRunner,
    op: Op,
    resource: str,
    options: Sequence[str] = (),
    *,
    config: str | None = None,
    timeout: float = 60.0,
    input: str | None = None,
) -> Outcome:
    """Run one operation and classify its result (CommandTimeout and
    RunnerConnectionError from the runner pass through unchanged)."""
    argv = drbdadm_argv(op, resource, *options, config=config)
    result = runner.run(argv, timeout=timeout, input=input)
    return classify(op, result)
