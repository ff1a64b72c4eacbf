"""Parse `/proc/drbd` of DRBD 8.4, which many sites still run.

    version: 8.4.11-1 (api:1/proto:86-101)
    GIT-hash: ... build by ...
     0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----
        ns:... nr:... dw:... dr:... al:... bm:... lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:917504
            [=>..................] sync'ed: 10.4% (917504/1024000)K
            finish: 0:00:35 speed: 25,600 (25,600) K/sec

8.4 names devices by minor, not by resource, so the caller says which minor is which
resource (from the rendered `device /dev/drbdN`). The six flag characters are: I/O
`r`unning or `s`uspended; resync paused by `a`fter-dependency, `p`eer, `u`ser; locally
blocked I/O `d`/`b`/`n`/`a`; activity-log updates `s`uspended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from drorch.replication.drbd.state import DrbdResourceState

_DEVICE = re.compile(r"^\s*(\d+):\s+(.*)$")
_SYNCED = re.compile(r"sync'ed:\s*([\d.]+)%\s*\((\d+)/(\d+)\)([KM])")
_VERIFIED = re.compile(r"verified:\s*([\d.]+)%")
_FINISH = re.compile(r"finish:\s*(\d+):(\d\d):(\d\d)")
_SPEED = re.compile(r"speed:\s*([\d,]+)")
_VERSION = re.compile(r"^version:\s*(\S+)")
COUNTERS = frozenset(
    {"ns", "nr", "dw", "dr", "al", "bm", "lo", "pe", "ua", "ap", "ep", "wo", "oos"}
)
STATE_KEYS = frozenset({"cs", "ro", "ds"})


@dataclass
class ProcDrbd:
    """Everything /proc/drbd said: the version and each minor's state."""

    version: str | None = None
    minors: dict[int, DrbdResourceState] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _parse_state_line(minor: int, rest: str, name: str) -> tuple[DrbdResourceState, list[str]]:
    tokens = rest.split()
    values: dict[str, str] = {}
    loose: list[str] = []
    for tok in tokens:
        key, sep, val = tok.partition(":")
        if sep:
            values[key] = val
        else:
            loose.append(tok)
    problems: list[str] = []
    role, _, peer_role = values.get("ro", "").partition("/")
    disk, _, peer_disk = values.get("ds", "").partition("/")
    protocol = next((t for t in loose if t in ("A", "B", "C")), None)
    flags = next((t for t in loose if len(t) == 6 and t[0] in "rs"), None)
    unknown: dict[str, Any] = {
        k: v for k, v in values.items() if k not in STATE_KEYS and k not in COUNTERS
    }
    extra_loose = [t for t in loose if t != protocol and t != flags]
    if extra_loose:
        unknown["tokens"] = extra_loose
    suspended: tuple[str, ...] = ()
    details: dict[str, Any] = {"minor": minor}
    if flags:
        details["flags"] = flags
        if flags[0] == "s":
            suspended = ("yes",)
        paused = [r for r, c in zip(("after", "peer", "user"), flags[1:4], strict=True) if c != "-"]
        if paused:
            details["resync_paused"] = paused
    cs = values.get("cs")
    if cs is None:
        problems.append(f"minor {minor}: no cs: field")
    if cs == "Unconfigured":
        return DrbdResourceState(name=name, connection="StandAlone", disk="Diskless"), problems
    connection: str | None
    replication: str | None
    if cs in ("Connected",):
        connection, replication = "Connected", "Established"
    elif cs is not None and cs[:1].isupper() and _is_replication(cs):
        connection, replication = "Connected", cs
    else:
        connection, replication = cs, None
    return (
        DrbdResourceState(
            name=name,
            role=role or None,
            peer_role=peer_role or None,
            disk=disk or None,
            peer_disk=peer_disk or None,
            connection=connection,
            replication=replication,
            suspended=suspended,
            protocol=protocol,
            details=details,
            unknown_fields=unknown,
        ),
        problems,
    )


def _is_replication(cs: str) -> bool:
    return cs.startswith(("Sync", "PausedSync", "StartingSync", "WFBitMap", "Verify")) or cs in (
        "WFSyncUUID",
        "Ahead",
        "Behind",
    )


def _apply_counters(state: DrbdResourceState, line: str) -> DrbdResourceState:
    counters: dict[str, str] = {}
    for tok in line.split():
        key, sep, val = tok.partition(":")
        if sep:
            counters[key] = val
    details = dict(state.details)
    for key in ("ns", "nr", "dw", "dr", "lo", "pe", "ua", "ap"):
        if key in counters:
            details[key] = counters[key]
    oos = counters.get("oos")
    unknown = {k: v for k, v in counters.items() if k not in COUNTERS}
    new = replace(
        state,
        out_of_sync_kib=int(oos) if oos and oos.isdigit() else state.out_of_sync_kib,
        details=details,
    )
    return new.with_unknown(unknown) if unknown else new


def _apply_progress(state: DrbdResourceState, line: str) -> DrbdResourceState:
    fields: dict[str, Any] = {}
    details = dict(state.details)
    m = _SYNCED.search(line)
    if m:
        fields["resync_done_percent"] = float(m.group(1))
        scale = 1024 if m.group(4) == "M" else 1
        fields["out_of_sync_kib"] = int(m.group(2)) * scale
        details["resync_total_kib"] = int(m.group(3)) * scale
    m = _VERIFIED.search(line)
    if m:
        details["verified_percent"] = float(m.group(1))
    m = _FINISH.search(line)
    if m:
        h, mi, s = (int(g) for g in m.groups())
        fields["resync_eta_seconds"] = float(h * 3600 + mi * 60 + s)
    m = _SPEED.search(line)
    if m:
        details["speed_kib_s"] = int(m.group(1).replace(",", ""))
    fields["details"] = details
    return replace(state, **fields)


def parse_proc_drbd(text: str, names: dict[int, str] | None = None) -> ProcDrbd:
    """Parse the whole file. `names` maps minor -> resource name (default `minor-N`,
    DRBD 8.4's own name for an unnamed minor). Odd lines are kept in `errors`."""
    names = names or {}
    out = ProcDrbd()
    current: int | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        vm = _VERSION.match(line)
        if vm:
            out.version = vm.group(1)
            current = None
            continue
        if line.startswith(("GIT-hash:", "srcversion:", "Transports")):
            continue
        dm = _DEVICE.match(line)
        if dm:
            current = int(dm.group(1))
            name = names.get(current, f"minor-{current}")
            state, problems = _parse_state_line(current, dm.group(2), name)
            out.minors[current] = state
            out.errors.extend(problems)
            continue
        if current is None:
            out.errors.append(f"line outside any device: {line.strip()!r}")
            continue
        stripped = line.strip()
        if stripped.startswith("ns:") or " oos:" in stripped:
            out.minors[current] = _apply_counters(out.minors[current], stripped)
        elif "sync'ed:" in stripped or "finish:" in stripped or "verified:" in stripped:
            out.minors[current] = _apply_progress(out.minors[current], stripped)
        elif stripped.startswith(("resync:", "act_log:")):
            continue  # 8.3/8.4 extended statistics, not needed
        else:
            cur = out.minors[current]
            lines = list(cur.unknown_fields.get("lines", []))
            lines.append(stripped)
            out.minors[current] = cur.with_unknown({"lines": lines})
    return out
