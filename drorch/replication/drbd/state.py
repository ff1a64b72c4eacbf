"""DRBD's own state vocabulary and how it maps onto drorch's shared `ReplicationStatus`.

The three parsers (`status_json`, `events2`, `proc_drbd`) all produce a `DrbdResourceState`
in DRBD's words. `to_status()` then maps those words onto the shared status type, keeping
the raw DRBD states in `extra["drbd"]` and anything it did not recognise in
`extra["unknown_states"]` / `extra["unknown_fields"]`, so nothing observed is thrown away
and nothing unknown crashes the parser.

Units: DRBD reports sizes and out-of-sync amounts in KiB; the shared type uses bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from drorch.replication.base import ConnState, DiskState, ReplicationStatus, Role

KIB = 1024

ROLES: Mapping[str, Role] = {
    "Primary": Role.PRIMARY,
    "Secondary": Role.SECONDARY,
    "Unknown": Role.UNKNOWN,
}

# DRBD 9 and 8.4 disk states. Transient states map to the nearest shared state; the raw
# name is always kept in extra["drbd"].
DISK_STATES: Mapping[str, DiskState] = {
    "UpToDate": DiskState.UP_TO_DATE,
    "Consistent": DiskState.CONSISTENT,
    "Outdated": DiskState.OUTDATED,
    "Inconsistent": DiskState.INCONSISTENT,
    "Diskless": DiskState.DISKLESS,
    "Failed": DiskState.DISKLESS,
    "Detaching": DiskState.DISKLESS,
    "Attaching": DiskState.UNKNOWN,
    "Negotiating": DiskState.UNKNOWN,
    "DUnknown": DiskState.UNKNOWN,
}

# Connection states of DRBD 9 (`connection-state`) and 8.4 (`cs:`). Every state that is
# not StandAlone and not yet Connected means DRBD is (re)trying to reach the peer.
CONNECTION_STATES: Mapping[str, ConnState] = {
    "StandAlone": ConnState.STANDALONE,
    "Disconnecting": ConnState.CONNECTING,
    "Unconnected": ConnState.CONNECTING,
    "Timeout": ConnState.CONNECTING,
    "BrokenPipe": ConnState.CONNECTING,
    "NetworkFailure": ConnState.CONNECTING,
    "ProtocolError": ConnState.CONNECTING,
    "TearDown": ConnState.CONNECTING,
    "Connecting": ConnState.CONNECTING,
    "WFConnection": ConnState.CONNECTING,  # 8.4
    "WFReportParams": ConnState.CONNECTING,  # 8.4
    "Connected": ConnState.CONNECTED,
}

# Replication states of a connected peer device (DRBD 9 `replication-state`; in 8.4 they
# appear as the `cs:` value itself).
REPLICATION_STATES: Mapping[str, ConnState] = {
    "Off": ConnState.CONNECTING,
    "Established": ConnState.CONNECTED,
    "StartingSyncS": ConnState.SYNC_SOURCE,
    "StartingSyncT": ConnState.SYNC_TARGET,
    "WFBitMapS": ConnState.SYNC_SOURCE,
    "WFBitMapT": ConnState.SYNC_TARGET,
    "WFSyncUUID": ConnState.SYNC_TARGET,
    "SyncSource": ConnState.SYNC_SOURCE,
    "SyncTarget": ConnState.SYNC_TARGET,
    "PausedSyncS": ConnState.SYNC_SOURCE,
    "PausedSyncT": ConnState.SYNC_TARGET,
    "VerifyS": ConnState.CONNECTED,
    "VerifyT": ConnState.CONNECTED,
    "Ahead": ConnState.CONNECTED,  # pull-ahead: the peer is Outdated until resync
    "Behind": ConnState.CONNECTED,
}


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class DrbdResourceState:
    """One resource (volume 0, first peer) in DRBD's own words, as a parser saw it.

    `None` means the source did not say. `out_of_sync_kib`, `size_kib` are KiB."""

    name: str
    role: str | None = None
    disk: str | None = None
    peer_role: str | None = None
    peer_disk: str | None = None
    connection: str | None = None
    replication: str | None = None
    out_of_sync_kib: int | None = None
    size_kib: int | None = None
    percent_in_sync: float | None = None
    resync_done_percent: float | None = None
    resync_eta_seconds: float | None = None
    suspended: tuple[str, ...] = ()
    quorum: bool | None = None
    protocol: str | None = None
    unknown_fields: Mapping[str, Any] = field(default_factory=_empty)
    details: Mapping[str, Any] = field(default_factory=_empty)

    def with_unknown(self, extra: Mapping[str, Any]) -> DrbdResourceState:
        merged = dict(self.unknown_fields)
        merged.update(extra)
        return replace(self, unknown_fields=MappingProxyType(merged))


def _mapped(
    raw: str | None, table: Mapping[str, Any], default: Any, label: str, unknown: list[str]
) -> Any:
    if raw is None:
        return default
    if raw in table:
        return table[raw]
    unknown.append(f"{label}={raw}")
    return default


def connection_state(state: DrbdResourceState, unknown: list[str]) -> ConnState:
    """The shared connection state: the connection's state, refined by the peer
    device's replication state once Connected. An unknown state counts as StandAlone
    (not replicating), the conservative reading."""
    conn: ConnState = _mapped(
        state.connection, CONNECTION_STATES, ConnState.STANDALONE, "connection", unknown
    )
    if state.connection is None and state.replication is not None:
        conn = ConnState.CONNECTED  # 8.4 folds both into cs:
    if conn is ConnState.CONNECTED and state.replication is not None:
        conn = _mapped(
            state.replication, REPLICATION_STATES, ConnState.CONNECTED, "replication", unknown
        )
    return conn


def to_status(state: DrbdResourceState, mode: str) -> ReplicationStatus:
    """Map a parsed DRBD resource onto the shared status type (never raises)."""
    unknown: list[str] = []
    role: Role = _mapped(state.role, ROLES, Role.UNKNOWN, "role", unknown)
    peer_role: Role = _mapped(state.peer_role, ROLES, Role.UNKNOWN, "peer-role", unknown)
    disk: DiskState = _mapped(state.disk, DISK_STATES, DiskState.UNKNOWN, "disk", unknown)
    peer_disk: DiskState = _mapped(
        state.peer_disk, DISK_STATES, DiskState.UNKNOWN, "peer-disk", unknown
    )
    conn = connection_state(state, unknown)
    oos_bytes = (state.out_of_sync_kib or 0) * KIB
    percent = state.percent_in_sync
    if percent is None and state.size_kib and state.out_of_sync_kib is not None:
        percent = 100.0 * (1 - state.out_of_sync_kib / state.size_kib)
    if percent is None and state.resync_done_percent is not None:
        percent = state.resync_done_percent  # 8.4 reports only the resync's progress
    if percent is None:
        percent = 100.0 if oos_bytes == 0 else 0.0
    raw = {
        "role": state.role,
        "disk": state.disk,
        "peer_role": state.peer_role,
        "peer_disk": state.peer_disk,
        "connection": state.connection,
        "replication": state.replication,
        "suspended": list(state.suspended),
    }
    extra: dict[str, Any] = {"drbd": raw}
    if state.protocol:
        extra["protocol"] = state.protocol
    if state.size_kib is not None:
        extra["size_bytes"] = state.size_kib * KIB
    if state.resync_done_percent is not None:
        extra["resync_done_percent"] = state.resync_done_percent
    if state.details:
        extra["details"] = dict(state.details)
    if unknown:
        extra["unknown_states"] = unknown
    if state.unknown_fields:
        extra["unknown_fields"] = dict(state.unknown_fields)
    return ReplicationStatus(
        name=state.name,
        role=role,
        disk=disk,
        connection=conn,
        mode=mode,
        peer_disk=peer_disk,
        peer_role=peer_role,
        out_of_sync_bytes=oos_bytes,
        lag_bytes=oos_bytes,
        percent_in_sync=round(percent, 2),
        resync_eta_seconds=state.resync_eta_seconds,
        suspended=bool(state.suspended),
        quorum=state.quorum,
        extra=MappingProxyType(extra),
    )


def down_status(name: str, mode: str, reason: str) -> ReplicationStatus:
    """The status of a resource that is not up on this node (DRBD knows nothing of it)."""
    return ReplicationStatus(
        name=name,
        role=Role.SECONDARY,
        disk=DiskState.DISKLESS,
        connection=ConnState.STANDALONE,
        mode=mode,
        extra=MappingProxyType({"up": False, "reason": reason}),
    )


def parse_flag(value: str) -> bool | None:
    """DRBD's yes/no/true/false flags; None for anything else."""
    low = value.strip().lower()
    if low in ("yes", "true"):
        return True
    if low in ("no", "false"):
        return False
    return None


def suspension_reasons(value: str) -> tuple[str, ...]:
    """`suspended:no` -> (); `suspended:user,quorum` -> ("user", "quorum")."""
    low = value.strip()
    if low in ("no", "false", ""):
        return ()
    if low in ("yes", "true"):
        return ("yes",)
    return tuple(p for p in low.split(",") if p)


def parse_gi(text: str) -> dict[str, Any]:
    """`drbdsetup get-gi RES PEER VOL`: `CURRENT:BITMAP:HISTORY1:HISTORY2:flags...`.
    Returns {} when the text is not in that shape."""
    fields = text.strip().split(":")
    if len(fields) < 4 or not all(_is_hex(f) for f in fields[:4]):
        return {}
    return {
        "current": fields[0],
        "bitmap": fields[1],
        "history": [fields[2], fields[3]],
        "flags": "".join(fields[4:]),
    }


def _is_hex(text: str) -> bool:
    return len(text) == 16 and all(c in "0123456789ABCDEFabcdef" for c in text)
