"""The quorum epoch a DRBD resource was last promoted with, kept in a file on the node.

DRBD itself has no fencing token, so drorch keeps one per resource on each node (through
the node's runner) and refuses a promotion with an older epoch, whichever process asks
(the agent, a runbook, an operator's CLI). The file holds one decimal number and is
replaced atomically. Its folder is `DRORCH_DRBD_STATE_DIR` or /var/lib/drorch/drbd.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from drorch.remote.base import CommandFailed, CommandRunner, RunnerError
from drorch.replication.base import ReplicationError
from drorch.replication.drbd.ops import drbd_message
from drorch.replication.drbd.status_sources import DrbdUnreachable

STATE_DIR_ENV = "DRORCH_DRBD_STATE_DIR"
DEFAULT_STATE_DIR = "/var/lib/drorch/drbd"
_WRITE = 'mkdir -p "$1" && printf "%s\\n" "$3" > "$2.tmp" && mv -f "$2.tmp" "$2"'


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
    folder = path.rpartition("/")[0] or "."
    argv = ["sh", "-c", _WRITE, "sh", folder, path, str(epoch)]
    try:
        runner.run(argv, timeout=15.0, check=True)
    except CommandFailed as exc:
        message = drbd_message(exc.result)
        raise ReplicationError(f"recording epoch {epoch} in {path}: {message}") from exc
    except RunnerError as exc:
        raise DrbdUnreachable(f"recording epoch {epoch} in {path}: {exc}") from exc
