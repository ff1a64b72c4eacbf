"""Parse DRBD 9's `drbdsetup events2` and follow it as a stream.

Each line is `[TIMESTAMP] EVENT OBJECT key:value ...`, where EVENT is `exists`, `create`,
`change`, `destroy`, `call` or `response`, and OBJECT is `resource`, `connection`,
`device`, `peer-device`, `path` or `helper`. `--now` prints the current state as `exists`
lines, ends it with `exists -`, and exits; without `--now` the command keeps printing
changes. `--statistics` adds counters (size, out-of-sync, done, eta, ...).

`Events2State` folds events into per-resource state (sans-I/O: feed it lines); `follow()`
runs the command through a `CommandRunner` and yields a fresh status on every change.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from drorch.remote.base import CommandFailed, CommandRunner
from drorch.replication.base import ReplicationStatus
from drorch.replication.drbd.ops import Op, classify
from drorch.replication.drbd.state import (
    DrbdResourceState,
    down_status,
    parse_flag,
    suspension_reasons,
    to_status,
)

EVENTS = frozenset({"exists", "create", "change", "destroy", "call", "response"})
KNOWN_KEYS: dict[str, frozenset[str]] = {
    "resource": frozenset(
        {
            "name",
            "role",
            "suspended",
            "force-io-failures",
            "may_promote",
            "promotion_score",
            "write-ordering",
        }
    ),
    "connection": frozenset(
        {
            "name",
            "peer-node-id",
            "conn-name",
            "connection",
            "role",
            "congested",
            "ap-in-flight",
            "rs-in-flight",
        }
    ),
    "device": frozenset(
        {
            "name",
            "volume",
            "minor",
            "backing_dev",
            "disk",
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
            "al-suspended",
            "blocked",
        }
    ),
    "peer-device": frozenset(
        {
            "name",
            "peer-node-id",
            "conn-name",
            "volume",
            "replication",
            "peer-disk",
            "peer-client",
            "resync-suspended",
            "received",
            "sent",
            "out-of-sync",
            "pending",
            "unacked",
            "done",
            "eta",
            "want",
            "dbdt",
            "rs-total",
        }
    ),
    "path": frozenset({"name", "peer-node-id", "conn-name", "local", "peer", "established"}),
    "helper": frozenset({"name", "volume", "peer-node-id", "conn-name", "helper", "status"}),
}
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+([+-]\d\d:?\d\d|Z)?$")


@dataclass(frozen=True)
class Event:
    """One events2 line. `fields` keeps every key:value, known or not."""

    event: str
    obj: str
    fields: dict[str, str]
    timestamp: str | None = None

    @property
    def resource(self) -> str | None:
        return self.fields.get("name")


class Events2ParseError(ValueError):
    """A line that is not `EVENT OBJECT key:value...` at all."""


def parse_line(line: str) -> Event | None:
    """Parse one line; None for blank lines and the `exists -` end-of-dump marker."""
    parts = line.split()
    if not parts:
        return None
    timestamp = None
    if _TIMESTAMP.match(parts[0]):
        timestamp, parts = parts[0], parts[1:]
    if len(parts) < 2:
        if parts == ["exists", "-"] or parts == ["exists"]:
            return None
        raise Events2ParseError(f"not an events2 line: {line!r}")
    event, obj, rest = parts[0], parts[1], parts[2:]
    if obj == "-":
        return None
    fields: dict[str, str] = {}
    for token in rest:
        key, sep, value = token.partition(":")
        if not sep:
            raise Events2ParseError(f"token {token!r} is not key:value in {line!r}")
        fields[key] = value
    return Event(event, obj, fields, timestamp)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _progressing(replication: str) -> bool:
    """A resync or online verify is running (its `done`/`eta` fields mean something)."""
    return replication.startswith(("Sync", "PausedSync", "Verify"))


@dataclass
class _Resource:
    resource: dict[str, str] = field(default_factory=dict)
    connections: dict[str, dict[str, str]] = field(default_factory=dict)
    devices: dict[str, dict[str, str]] = field(default_factory=dict)
    peer_devices: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    other: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Events2State:
    """Folds events into the current state of every resource (sans-I/O)."""

    resources: dict[str, _Resource] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    initial_done: bool = False

    def feed(self, line: str) -> Event | None:
        """Apply one line; returns the event (None for markers). Bad lines are kept in
        `errors`, never raised: a stream must survive one odd line."""
        if line.split() in (["exists", "-"],) or line.strip().endswith(" exists -"):
            self.initial_done = True
            return None
        try:
            ev = parse_line(line)
        except Events2ParseError as exc:
            self.errors.append(str(exc))
            return None
        if ev is None:
            return None
        self.apply(ev)
        return ev

    def apply(self, ev: Event) -> None:
        name = ev.resource
        if name is None:
            self.errors.append(f"{ev.event} {ev.obj} without name:")
            return
        if ev.event not in EVENTS:
            self.errors.append(f"unknown event {ev.event!r} for {name}")
        res = self.resources.setdefault(name, _Resource())
        peer = ev.fields.get("peer-node-id", "?")
        vol = ev.fields.get("volume", "0")
        if ev.event == "destroy":
            if ev.obj == "resource":
                del self.resources[name]
            elif ev.obj == "connection":
                res.connections.pop(peer, None)
                for key in [k for k in res.peer_devices if k[0] == peer]:
                    del res.peer_devices[key]
            elif ev.obj == "device":
                res.devices.pop(vol, None)
            elif ev.obj == "peer-device":
                res.peer_devices.pop((peer, vol), None)
            return
        if ev.event in ("call", "response") or ev.obj in ("path", "helper"):
            res.other.append({"event": ev.event, "object": ev.obj, **ev.fields})
            del res.other[:-10]  # keep the last few helper calls and path changes
            return
        if ev.obj == "resource":
            res.resource.update(ev.fields)
        elif ev.obj == "connection":
            res.connections.setdefault(peer, {}).update(ev.fields)
        elif ev.obj == "device":
            res.devices.setdefault(vol, {}).update(ev.fields)
        elif ev.obj == "peer-device":
            pd = res.peer_devices.setdefault((peer, vol), {})
            pd.update(ev.fields)
            if not _progressing(pd.get("replication", "")):
                for stale in ("done", "eta", "want", "dbdt"):  # a finished resync's leftovers
                    pd.pop(stale, None)
        else:
            res.other.append({"event": ev.event, "object": ev.obj, **ev.fields})
            del res.other[:-10]

    def state(self, name: str) -> DrbdResourceState | None:
        """The resource in DRBD's words, or None when events2 does not know it."""
        res = self.resources.get(name)
        if res is None:
            return None
        unknown: dict[str, Any] = {}

        def collect(obj: str, fields: dict[str, str]) -> None:
            for k, v in fields.items():
                if k not in KNOWN_KEYS[obj]:
                    unknown[f"{obj}.{k}"] = v

        collect("resource", res.resource)
        device = res.devices.get("0") or next(iter(res.devices.values()), {})
        collect("device", device)
        conn_key = next(iter(sorted(res.connections)), None)
        conn = res.connections.get(conn_key, {}) if conn_key is not None else {}
        collect("connection", conn)
        peer = res.peer_devices.get((conn_key or "?", "0"), {})
        if not peer and res.peer_devices:
            peer = next(iter(res.peer_devices.values()))
        collect("peer-device", peer)
        if len(res.connections) > 1:
            unknown["connections[other]"] = sorted(res.connections)[1:]
        if len(res.devices) > 1:
            unknown["devices[other]"] = sorted(res.devices)[1:]
        details: dict[str, Any] = {}
        if res.other:
            details["recent"] = list(res.other)
        for key in ("minor", "backing_dev", "open"):
            if key in device:
                details[f"device.{key}"] = device[key]
        if conn_key is not None:
            details["connection.peer-node-id"] = conn_key
            if "conn-name" in conn:
                details["connection.conn-name"] = conn["conn-name"]
        for key in ("received", "sent", "pending", "unacked", "resync-suspended"):
            if key in peer:
                details[f"peer_device.{key}"] = peer[key]
        quorum = parse_flag(device["quorum"]) if "quorum" in device else None
        syncing = _progressing(peer.get("replication", ""))
        return DrbdResourceState(
            name=name,
            role=res.resource.get("role"),
            disk=device.get("disk"),
            peer_role=conn.get("role"),
            peer_disk=peer.get("peer-disk"),
            connection=conn.get("connection") if conn else "StandAlone",
            replication=peer.get("replication"),
            out_of_sync_kib=_int(peer.get("out-of-sync")),
            size_kib=_int(device.get("size")),
            resync_done_percent=_float(peer.get("done")) if syncing else None,
            resync_eta_seconds=_float(peer.get("eta")) if syncing else None,
            suspended=suspension_reasons(res.resource.get("suspended", "no")),
            quorum=quorum,
            details=details,
        ).with_unknown(unknown)


def parse_events2(text: str) -> Events2State:
    """Fold a whole `drbdsetup events2 --now --statistics` dump."""
    st = Events2State()
    for line in text.splitlines():
        st.feed(line)
    return st


def events2_argv(resource: str | None, *, now: bool) -> list[str]:
    argv = ["drbdsetup", "events2"]
    if now:
        argv.append("--now")
    argv.append("--statistics")
    if resource:
        argv.append(resource)
    return argv


def _classified(stream: Iterator[str]) -> Iterator[str]:
    """The stream's lines; drbdsetup exiting non-zero (no module, unknown resource)
    becomes the typed DRBD error, like every other drbdsetup/drbdadm failure."""
    try:
        yield from stream
    except CommandFailed as exc:
        classify(Op.STATUS, exc.result)
        raise


def follow(
    runner: CommandRunner, resource: str, mode: str, *, timeout: float | None = None
) -> Generator[ReplicationStatus, None, None]:
    """Yield the resource's status once the initial dump is complete, then again after
    every change that concerns it (no polling). Closing the generator stops drbdsetup.
    Statistics-only updates that leave the status unchanged are not repeated."""
    st = Events2State()
    last: ReplicationStatus | None = None
    stream = runner.stream(events2_argv(resource, now=False), timeout=timeout)
    try:
        for line in _classified(stream):
            ev = st.feed(line)
            if not st.initial_done:
                continue
            if ev is not None and ev.resource not in (None, resource):
                continue
            state = st.state(resource)
            if state is None:
                if last is None or last.extra.get("up") is False:
                    continue
                status = down_status(resource, mode, "the resource was taken down")
            else:
                status = to_status(state, mode)
            if status != last:
                last = status
                yield status
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
