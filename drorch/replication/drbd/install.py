"""Install a rendered resource file on a node, the way an operator would, through its
runner: write it next to the target, let the node's own drbdadm parse it, then move it
into place atomically. A file drbdadm rejects never replaces a working one.

After installing, `drbdadm adjust RES` applies a changed file to a running resource.
"""

from __future__ import annotations

from dataclasses import dataclass

from drorch.remote.base import CommandFailed, CommandRunner, RunnerError
from drorch.replication.base import ReplicationError
from drorch.replication.drbd.ops import DrbdConfigError, drbd_message
from drorch.replication.drbd.status_sources import DrbdUnreachable


@dataclass(frozen=True)
class InstallResult:
    path: str
    changed: bool
    reason: str


def default_path(resource: str) -> str:
    return f"/etc/drbd.d/{resource}.res"


def install_resource(
    runner: CommandRunner, resource: str, text: str, path: str, *, dry_run: bool = False
) -> InstallResult:
    """Write `text` to `path` on the node if drbdadm accepts it and it differs."""
    try:
        current = runner.run(["cat", path], timeout=15.0)
        if current.ok and current.stdout == text:
            return InstallResult(path, False, f"{path} is already up to date")
        if dry_run:
            verb = "replace" if current.ok else "create"
            return InstallResult(path, False, f"would {verb} {path} (dry run)")
        tmp = f"{path}.drorch-new"
        runner.run(["sh", "-c", 'cat > "$1"', "sh", tmp], input=text, timeout=15.0, check=True)
        check = runner.run(["drbdadm", "-c", tmp, "dump", "all"], timeout=30.0)
        if not check.ok:
            runner.run(["rm", "-f", tmp], timeout=15.0)
            raise DrbdConfigError("install", check, "drbdadm on the node rejects the file")
        runner.run(["mv", "-f", tmp, path], timeout=15.0, check=True)
    except CommandFailed as exc:
        raise ReplicationError(f"installing {path}: {drbd_message(exc.result)}") from exc
    except RunnerError as exc:
        raise DrbdUnreachable(f"installing {path}: {exc}") from exc
    verb = "replaced" if current.ok else "created"
    return InstallResult(path, True, f"{verb} {path} (drbdadm accepts it); run drbd adjust")
