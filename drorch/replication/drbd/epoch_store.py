"""The quorum epoch a DRBD resource was last promoted with, kept in a file on the node.

DRBD itself has no fencing token, so drorch keeps one per resource on each node (through
the node's runner) and refuses a promotion with an older epoch, whichever process asks
(the agent, a runbook, an operator's CLI). The file holds one decimal number and is
replaced atomically and durably on the node, through its runner, by the shell form of
`drorch.durable` (temporary file, fsync, rename, fsync of the folder): a fencing token
that a power cut could roll back would let an older primary through. Epochs are strict:
a new primary at the recorded epoch itself is refused too (`stale_epoch`), as pyrepl
does. Its folder is `DRORCH_DRBD_STATE_DIR` or /var/lib/drorch/drbd.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from drorch.durable import SHELL_WRITE, shell_write_command
from drorch.remote.base import CommandFailed, CommandRunner, RunnerError
from drorch.replication.base import ReplicationError, StaleEpoch
from drorch.replication.drbd.ops import drbd_message
from drorch.replication.drbd.status_sources import DrbdUnreachable

STATE_DIR_ENV = "DRORCH_DRBD_STATE_DIR"
DEFAULT_STATE_DIR = "/var/lib/drorch/drbd"
_WRITE = SHELL_WRITE


def state_dir(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR


def epoch_path(folder: str, resource: str) -> str:
    return f"{folder.rstrip('/')}/{resource}.epoch"


def read_epoch(runner: CommandRunner, path: str) -> int:
    """The recorded epoch; 0 when none was ever recorded."""
    try:
        result = runner.run(["cat", path], timeout=15.0)
    except RunnerError as exc:
        raise DrbdUnreachable(f"reading {path}: {exc}") from exc
    if not result.ok:
        if "No such file" in result.stderr:
            return 0
        raise ReplicationError(f"reading {path}: {drbd_message(result)}")
    text = result.stdout.strip()
    if not text.isdigit():
        raise ReplicationError(f"{path} holds {text[:40]!r}, not an epoch: fix or remove it")
    return int(text)


def write_epoch(runner: CommandRunner, path: str, epoch: int) -> None:
    argv = shell_write_command(path, str(epoch))
    try:
        runner.run(argv, timeout=15.0, check=True)
    except CommandFailed as exc:
        message = drbd_message(exc.result)
        raise ReplicationError(f"recording epoch {epoch} in {path}: {message}") from exc
    except RunnerError as exc:
        raise DrbdUnreachable(f"recording epoch {epoch} in {path}: {exc}") from exc


def stale_epoch(volume: str, node: str, path: str, epoch: int, seen: int) -> StaleEpoch:
    """The refusal of a promotion at `epoch` where `seen` is recorded: older, or equal
    (a new primary takes an epoch no primary of the volume had: equal is reuse)."""
    how = "older than" if epoch < seen else "equal to"
    return StaleEpoch(
        f"{volume}: epoch {epoch} is {how} epoch {seen} already seen on {node} ({path}):"
        f" a promotion needs an epoch greater than {seen} (the witness's next grant; if"
        f" {seen} is newer, another primary exists)"
    )
