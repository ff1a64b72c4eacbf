"""Parse DRBD 9's `drbdsetup status --json` (drbd-utils 9.x).

The output is a JSON list of resources; each has `devices` (the local volumes) and
`connections`, each connection with `peer_devices`. drorch resources have one volume
(volume 0) and one peer, so the parser reads volume 0 of the first connection and keeps
the rest (more volumes, more peers) in `unknown_fields` rather than dropping it.

Sizes and `out-of-sync` are KiB. While a resync runs, the peer device carries
`has-sync-details: true` plus `percent-resync-done` and `estimated-seconds-to-finish`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from drorch.replication.drbd.state import DrbdResourceState

RESOURCE_KEYS = frozenset(
    {
        "name",
        "node-id",
        "role",
        "suspended",
        "suspended-user",
        "suspended-no-data",
        "suspended-fencing",
        "suspended-quorum",
        "force-io-failures",
        "write-ordering",
        "devices",
        "connections",
    }
)
DEVICE_KEYS = frozenset(
    {
        "volume",
        "minor",
        "disk-state",
        "client",
        "open",
        "quorum",
        "size",
        "read",
        "written",
        "al-writes",
        "bm-writes",
        "upper-pending",
        "lower-pending",
    }
)
CONNECTION_KEYS = frozenset(
    {
        "peer-node-id",
        "name",
        "connection-state",
        "congested",
        "peer-role",
        "tls",
        "ap-in-flight",
        "rs-in-flight",
        "paths",
        "peer_devices",
    }
)
PEER_DEVICE_KEYS = frozenset(
    {
        "volume",
        "replication-state",
        "peer-disk-state",
        "peer-client",
        "resync-suspended",
        "received",
        "sent",
        "out-of-sync",
        "pending",
        "unacked",
        "has-sync-details",
        "has-online-verify-details",
        "percent-in-sync",
        "rs-total",
        "rs-dt-start-ms",
        "rs-paused-ms",
        "rs-dt0-ms",
        "rs-db0-sectors",
        "rs-dt1-ms",
        "rs-db1-sectors",
        "ov-start-sector",
        "ov-stop-sector",
        "ov-position",
        "ov-left",
        "ov-skipped",
        "rs-failed",
        "rs-same-csum",
        "db0/dt0 [MiB/s]",
        "db1/dt1 [MiB/s]",
        "estimated-seconds-to-finish",
        "db/dt [MiB/s]",
        "percent-resync-done",
        "want",
    }
)
SUSPEND_REASONS = ("user", "no-data", "fencing", "quorum")


class StatusParseError(ValueError):
    """The text is not `drbdsetup status --json` output at all (not JSON, not a list)."""


def _unknown(obj: Mapping[str, Any], known: frozenset[str], prefix: str) -> dict[str, Any]:
    return {f"{prefix}{k}": v for k, v in obj.items() if k not in known}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _first_volume(items: Any, where: str, unknown: dict[str, Any]) -> dict[str, Any]:
    """Volume 0 (or the first) of a list; extra volumes go to `unknown`."""
    if not isinstance(items, list):
        if items is not None:
            unknown[where] = items
        return {}
    dicts = [d for d in items if isinstance(d, dict)]
    chosen = next((d for d in dicts if d.get("volume") == 0), dicts[0] if dicts else {})
    others = [d for d in items if d is not chosen]
    if others:
        unknown[f"{where}[other]"] = others
    return chosen


def parse_resource(res: Mapping[str, Any]) -> DrbdResourceState:
    """One element of the JSON list."""
    unknown = _unknown(res, RESOURCE_KEYS, "")
    device = _first_volume(res.get("devices"), "devices", unknown)
    unknown.update(_unknown(device, DEVICE_KEYS, "device."))
    connections = res.get("connections")
    conn: dict[str, Any] = {}
    if isinstance(connections, list) and connections:
        conn = connections[0] if isinstance(connections[0], dict) else {}
        if len(connections) > 1:
            unknown["connections[other]"] = connections[1:]
    elif connections is not None and not isinstance(connections, list):
        unknown["connections"] = connections
    unknown.update(_unknown(conn, CONNECTION_KEYS, "connection."))
    peer = _first_volume(conn.get("peer_devices"), "connection.peer_devices", unknown)
    unknown.update(_unknown(peer, PEER_DEVICE_KEYS, "peer_device."))

    suspended = [r for r in SUSPEND_REASONS if res.get(f"suspended-{r}") is True]
    if res.get("suspended") is True and not suspended:
        suspended = ["yes"]
    has_sync = peer.get("has-sync-details") is True
    details: dict[str, Any] = {}
    for key in ("node-id", "write-ordering", "force-io-failures"):
        if key in res:
            details[key] = res[key]
    for key in ("minor", "client", "read", "written", "upper-pending", "lower-pending"):
        if key in device:
            details[f"device.{key}"] = device[key]
    for key in ("peer-node-id", "name", "congested", "ap-in-flight", "rs-in-flight"):
        if key in conn:
            details[f"connection.{key}"] = conn[key]
    for key in ("resync-suspended", "received", "sent", "pending", "unacked", "rs-total"):
        if key in peer:
            details[f"peer_device.{key}"] = peer[key]
    if peer.get("has-online-verify-details") is True:
        details["verify"] = {
            k: peer[k] for k in ("ov-start-sector", "ov-stop-sector", "ov-left") if k in peer
        }

    return DrbdResourceState(
        name=_str(res.get("name")) or "?",
        role=_str(res.get("role")),
        disk=_str(device.get("disk-state")),
        peer_role=_str(conn.get("peer-role")) if conn else None,
        peer_disk=_str(peer.get("peer-disk-state")) if peer else None,
        connection=_str(conn.get("connection-state")) if conn else "StandAlone",
        replication=_str(peer.get("replication-state")) if peer else None,
        out_of_sync_kib=_int(peer.get("out-of-sync")),
        size_kib=_int(device.get("size")),
        percent_in_sync=_num(peer.get("percent-in-sync")),
        resync_done_percent=_num(peer.get("percent-resync-done")) if has_sync else None,
        resync_eta_seconds=_num(peer.get("estimated-seconds-to-finish")) if has_sync else None,
        suspended=tuple(suspended),
        quorum=device.get("quorum") if isinstance(device.get("quorum"), bool) else None,
        details=details,
    ).with_unknown(unknown)


def parse_status_json(text: str) -> list[DrbdResourceState]:
    """Every resource in the output. Empty output means no resource is up."""
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StatusParseError(f"drbdsetup status --json: not JSON ({exc})") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise StatusParseError("drbdsetup status --json: expected a list of resources")
    return [parse_resource(r) for r in data if isinstance(r, dict)]


def find_resource(text: str, name: str) -> DrbdResourceState | None:
    """The named resource, or None when it is not up."""
    for res in parse_status_json(text):
        if res.name == name:
            return res
    return None
