"""Whatever DRBD (or a broken pipe) prints, the parsers report it and never crash."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from drorch.replication.drbd.events2 import Events2State
from drorch.replication.drbd.proc_drbd import parse_proc_drbd
from drorch.replication.drbd.state import to_status
from drorch.replication.drbd.status_json import StatusParseError, parse_status_json
from tests.drbd.conftest import fixture_text

KEYS = st.sampled_from(
    ["name", "role", "disk-state", "connection-state", "replication-state", "peer-role",
     "peer-disk-state", "out-of-sync", "size", "quorum", "suspended", "devices",
     "connections", "peer_devices", "volume", "percent-in-sync", "has-sync-details",
     "estimated-seconds-to-finish", "percent-resync-done", "zz-new"]
)  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_status_json_any_shape(value: Any) -> None:
    try:
        states = parse_status_json(json.dumps(value))
    except StatusParseError:
        return
    for state in states:
        to_status(state, "sync").as_dict()


WORDS = st.sampled_from(
    ["exists", "change", "destroy", "create", "call", "resource", "connection", "device",
     "peer-device", "helper", "path", "-", "name:r0", "role:Primary", "disk:UpToDate",
     "connection:Connected", "replication:SyncSource", "peer-disk:Outdated", "out-of-sync:x",
     "out-of-sync:12", "size:100", "done:5.5", "eta:zz", "volume:0", "peer-node-id:1",
     "suspended:user,quorum", "quorum:maybe", "garbage", "a:b:c", ":"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(WORDS, max_size=8).map(" ".join), max_size=20))
def test_events2_any_lines(lines: list[str]) -> None:
    state = Events2State()
    for line in fixture_text("events2-connected-secondary.txt").splitlines() + lines:
        state.feed(line)
    for name in list(state.resources):
        folded = state.state(name)
        if folded is not None:
            to_status(folded, "sync").as_dict()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=60), max_size=12))
def test_proc_drbd_any_text(lines: list[str]) -> None:
    text = fixture_text("proc-drbd-84.txt") + "\n".join(lines)
    proc = parse_proc_drbd(text)
    for state in proc.minors.values():
        to_status(state, "sync").as_dict()
