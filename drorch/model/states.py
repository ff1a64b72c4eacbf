"""The one set of replication and VM state names, and the one `in_sync()`.

Replication states follow DRBD 9's spelling (so an operator reads them the same way
whichever driver is underneath), VM states libvirt's. They are StrEnums: a state compares
equal to its spelling (`DiskState.UP_TO_DATE == "UpToDate"`), so a snapshot built from
plain strings and a driver's enum value mean the same thing.

Every layer imports these names from here: the drivers (`drorch.replication.base`,
`drorch.virt.base` re-export them), the pure decisions in `drorch.decide`, the CLI and the
test contracts.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    UNKNOWN = "unknown"


class DiskState(StrEnum):
    UP_TO_DATE = "UpToDate"
    INCONSISTENT = "Inconsistent"
    OUTDATED = "Outdated"
    DISKLESS = "Diskless"
    CONSISTENT = "Consistent"
    UNKNOWN = "DUnknown"


class ConnState(StrEnum):
    STANDALONE = "StandAlone"
    CONNECTING = "Connecting"
    CONNECTED = "Connected"
    SYNC_SOURCE = "SyncSource"
    SYNC_TARGET = "SyncTarget"


class VMState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    UNDEFINED = "undefined"


# A resync is running in one direction or the other.
SYNCING: frozenset[str] = frozenset({ConnState.SYNC_SOURCE, ConnState.SYNC_TARGET})
# A replica nothing can start from: a partial resync, or no disk at all.
UNUSABLE_DISKS: frozenset[str] = frozenset({DiskState.INCONSISTENT, DiskState.DISKLESS})
# A VM that holds its disks open: a paused guest (e.g. receiving a live migration) too.
ACTIVE_VM_STATES: frozenset[str] = frozenset({VMState.RUNNING, VMState.PAUSED})


def is_syncing(connection: str) -> bool:
    return connection in SYNCING


def in_sync(
    disk: str,
    connection: str,
    *,
    peer_disk: str | None = None,
    out_of_sync_bytes: int = 0,
    lag_bytes: int = 0,
) -> bool:
    """One replica is in sync with its peer: its disk is UpToDate, it is Connected (not
    resyncing, not StandAlone), nothing is left to send, and, when `peer_disk` is given,
    the peer's disk is UpToDate too. Plain strings and the enums above both work."""
    return (
        disk == DiskState.UP_TO_DATE
        and connection == ConnState.CONNECTED
        and (peer_disk is None or peer_disk == DiskState.UP_TO_DATE)
        and out_of_sync_bytes == 0
        and lag_bytes == 0
    )
