"""Read one DRBD resource's status on a node from any of DRBD's three sources.

    json     `drbdsetup status RES --json`        (DRBD 9, the default)
    events2  `drbdsetup events2 --now --statistics RES`   (DRBD 9, one snapshot)
    proc     `cat /proc/drbd`                      (DRBD 8.4; minors, not names)

A resource that is not up is a status (`extra.up = false`), not an error. A node that
cannot be asked (ssh down, timeout, no kernel module) raises a ReplicationError subtype.
"""

from __future__ import annotations

from drorch.model.types import Volume
from drorch.remote.base import CommandRunner, RunnerError
from drorch.replication.base import ReplicationError, ReplicationStatus
from drorch.replication.drbd.events2 import events2_argv, parse_events2
from drorch.replication.drbd.ops import DrbdModuleMissing, Op, classify
from drorch.replication.drbd.proc_drbd import parse_proc_drbd
from drorch.replication.drbd.render import minor
from drorch.replication.drbd.state import down_status, to_status
from drorch.replication.drbd.status_json import StatusParseError, find_resource

NOT_UP = ("No such resource", "Unknown resource")
SOURCES = ("json", "events2", "proc")


class DrbdUnreachable(ReplicationError):
    """The node could not be asked (ssh down, command timed out)."""


def _argv(volume: Volume, source: str) -> list[str]:
    if source == "json":
        return ["drbdsetup", "status", volume.name, "--json"]
    if source == "events2":
        return events2_argv(volume.name, now=True)
    if source == "proc":
        return ["cat", "/proc/drbd"]
    raise ValueError(f"unknown status source {source!r}; one of {', '.join(SOURCES)}")


def read_status(runner: CommandRunner, volume: Volume, source: str = "json") -> ReplicationStatus:
    argv = _argv(volume, source)
    mode = volume.mode.value
    try:
        result = runner.run(argv, timeout=15.0)
    except RunnerError as exc:
        raise DrbdUnreachable(f"cannot ask DRBD ({' '.join(argv)}): {exc}") from exc
    if not result.ok:
        text = f"{result.stderr}\n{result.stdout}"
        if any(marker in text for marker in NOT_UP):
            return down_status(volume.name, mode, "not up on this node")
        if source == "proc" and "No such file" in text:
            # no /proc/drbd: no module, so nothing is known (never "secondary, in sync")
            raise DrbdModuleMissing(Op.STATUS, result, "the drbd kernel module is not loaded")
        classify(Op.STATUS, result)  # raises the typed error (module missing, ...)
    if source == "json":
        try:
            state = find_resource(result.stdout, volume.name)
        except StatusParseError as exc:
            raise ReplicationError(str(exc)) from exc
    elif source == "events2":
        state = parse_events2(result.stdout).state(volume.name)
    else:
        state = parse_proc_drbd(result.stdout, {minor(volume): volume.name}).minors.get(
            minor(volume)
        )
        if state is not None and state.connection == "StandAlone" and state.disk == "Diskless":
            return down_status(volume.name, mode, f"minor {minor(volume)} is Unconfigured")
    if state is None:
        return down_status(volume.name, mode, "not up on this node")
    return to_status(state, mode)
