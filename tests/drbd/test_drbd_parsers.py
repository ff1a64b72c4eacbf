"""The three DRBD status parsers over every fixture state of a two-node resource."""

from __future__ import annotations

import pytest

from drorch.replication.base import ConnState, DiskState, Role
from drorch.replication.drbd.events2 import Events2State, parse_events2, parse_line
from drorch.replication.drbd.proc_drbd import parse_proc_drbd
from drorch.replication.drbd.state import to_status
from drorch.replication.drbd.status_json import (
    StatusParseError,
    find_resource,
    parse_status_json,
)
from tests.drbd.conftest import FIXTURES, fixture_text

P, S, U = Role.PRIMARY, Role.SECONDARY, Role.UNKNOWN
UTD, INC, OUT, DL, DU = (
    DiskState.UP_TO_DATE,
    DiskState.INCONSISTENT,
    DiskState.OUTDATED,
    DiskState.DISKLESS,
    DiskState.UNKNOWN,
)
SA, CING, CD, SS, ST = (
    ConnState.STANDALONE,
    ConnState.CONNECTING,
    ConnState.CONNECTED,
    ConnState.SYNC_SOURCE,
    ConnState.SYNC_TARGET,
)

# state name: role, disk, peer role, peer disk, connection, oos bytes, suspended, quorum
EXPECTED = {
    "connected-secondary": (S, UTD, S, UTD, CD, 0, False, True),
    "primary-connected": (P, UTD, S, UTD, CD, 0, False, True),
    "secondary-peer-primary": (S, UTD, P, UTD, CD, 0, False, True),
    "standalone": (S, UTD, U, DU, SA, 0, False, True),
    "connecting": (S, UTD, U, DU, CING, 0, False, True),
    "split-brain-a": (P, UTD, U, DU, SA, 8192 * 1024, False, True),
    "split-brain-b": (P, UTD, U, DU, SA, 4096 * 1024, False, True),
    "sync-source": (P, UTD, S, INC, SS, 393216 * 1024, False, True),
    "sync-target": (S, INC, P, UTD, ST, 393216 * 1024, False, True),
    "diskless": (S, DL, P, UTD, CD, 0, False, True),
    "suspended": (P, UTD, U, DU, CING, 0, True, True),
    "quorum-lost": (P, UTD, U, DU, CING, 0, True, False),
    "outdated-peer": (P, UTD, U, OUT, CING, 1024 * 1024, False, True),
    "outdated-local": (S, OUT, U, DU, CING, 0, False, True),
}


def _check(status, expected):  # type: ignore[no-untyped-def]
    role, disk, peer_role, peer_disk, conn, oos, suspended, quorum = expected
    assert status.role is role
    assert status.disk is disk
    assert status.peer_role is peer_role
    assert status.peer_disk is peer_disk
    assert status.connection is conn
    assert status.out_of_sync_bytes == oos
    assert status.suspended is suspended
    assert status.quorum is quorum
    assert "unknown_states" not in status.extra
    assert "unknown_fields" not in status.extra


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_status_json_fixture(case: str) -> None:
    state = find_resource(fixture_text(f"status-{case}.json"), "r0")
    assert state is not None
    _check(to_status(state, "sync"), EXPECTED[case])


# every single-state events2 fixture (the stream and unknown-field ones have own tests)
EVENTS2_CASES = sorted(
    p.stem.removeprefix("events2-")
    for p in FIXTURES.glob("events2-*.txt")
    if p.stem not in ("events2-stream", "events2-unknown-fields", "events2-verify")
)


@pytest.mark.parametrize("case", EVENTS2_CASES)
def test_events2_fixture(case: str) -> None:
    st = parse_events2(fixture_text(f"events2-{case}.txt"))
    assert st.initial_done and st.errors == []
    state = st.state("r0")
    assert state is not None
    key = "split-brain-a" if case == "split-brain" else case
    _check(to_status(state, "sync"), EXPECTED[key])


def test_every_status_json_fixture_is_covered() -> None:
    names = {p.stem.removeprefix("status-") for p in FIXTURES.glob("status-*.json")}
    assert names - {"unknown-fields"} == set(EXPECTED)


def test_resync_progress_and_eta_from_json() -> None:
    status = to_status(find_resource(fixture_text("status-sync-target.json"), "r0"), "sync")  # type: ignore[arg-type]
    assert status.percent_in_sync == 62.5
    assert status.resync_eta_seconds == 12.0
    assert status.extra["resync_done_percent"] == 25.0
    assert status.extra["drbd"]["replication"] == "SyncTarget"


def test_resync_progress_and_eta_from_events2() -> None:
    state = parse_events2(fixture_text("events2-sync-source.txt")).state("r0")
    assert state is not None
    status = to_status(state, "async")
    assert status.resync_eta_seconds == 12.0
    assert status.extra["resync_done_percent"] == 25.0
    assert status.percent_in_sync == pytest.approx(100 * (1 - 393216 / 1048508), abs=0.01)
    assert status.mode == "async"


def test_split_brain_shows_primary_standalone_on_both_sides() -> None:
    a = to_status(find_resource(fixture_text("status-split-brain-a.json"), "r0"), "sync")  # type: ignore[arg-type]
    b = to_status(find_resource(fixture_text("status-split-brain-b.json"), "r0"), "sync")  # type: ignore[arg-type]
    assert (a.role, a.connection, b.role, b.connection) == (P, SA, P, SA)
    assert a.out_of_sync_bytes > 0 and b.out_of_sync_bytes > 0


def test_suspension_reasons_are_kept() -> None:
    state = find_resource(fixture_text("status-quorum-lost.json"), "r0")
    assert state is not None and state.suspended == ("quorum",)
    ev = parse_events2(fixture_text("events2-suspended.txt")).state("r0")
    assert ev is not None and ev.suspended == ("fencing",)


def test_unknown_fields_and_states_from_json_are_kept_not_fatal() -> None:
    state = find_resource(fixture_text("status-unknown-fields.json"), "r0")
    assert state is not None
    status = to_status(state, "sync")
    assert status.extra["unknown_fields"] == {"future-knob": "on", "peer_device.peer-xyz": 7}
    assert status.extra["unknown_states"] == ["replication=Teleporting"]
    assert status.role is P
    assert status.connection is CD  # unknown replication keeps the connection's state


def test_unknown_fields_and_states_from_events2_are_kept_not_fatal() -> None:
    st = parse_events2(fixture_text("events2-unknown-fields.txt"))
    state = st.state("r0")
    assert state is not None
    status = to_status(state, "sync")
    assert status.extra["unknown_fields"] == {"resource.future-knob": "on"}
    assert status.extra["unknown_states"] == ["replication=Teleporting"]
    assert status.extra["details"]["recent"][-1]["object"] == "quantum-link"


def test_json_garbage_raises_a_parse_error() -> None:
    with pytest.raises(StatusParseError, match="not JSON"):
        parse_status_json("r0 role:Secondary")
    with pytest.raises(StatusParseError, match="list"):
        parse_status_json('"hello"')
    assert parse_status_json("") == []
    assert parse_status_json("[]") == []


def test_json_odd_shapes_do_not_crash() -> None:
    state = parse_status_json('[{"name": "r0", "role": 7, "devices": 3, "connections": []}]')[0]
    status = to_status(state, "sync")
    assert status.role is U
    assert status.connection is SA
    assert status.extra["unknown_fields"] == {"devices": 3}


def test_events2_stream_folds_changes_and_keeps_bad_lines() -> None:
    st = Events2State()
    seen = []
    for line in fixture_text("events2-stream.txt").splitlines():
        st.feed(line)
        state = st.state("r0")
        if st.initial_done and state is not None:
            seen.append(to_status(state, "sync").connection)
    assert st.errors == ["token 'is' is not key:value in 'this line is garbage'"]
    final = to_status(st.state("r0"), "sync")  # type: ignore[arg-type]
    assert (final.role, final.connection, final.peer_disk) == (P, CD, UTD)
    assert final.out_of_sync_bytes == 0
    assert final.resync_eta_seconds is None  # the finished resync's eta/done are dropped
    assert "resync_done_percent" not in final.extra
    changes = [c for i, c in enumerate(seen) if i == 0 or seen[i - 1] != c]
    assert changes == [CD, CING, SS, CD]
    assert "r9" in st.resources
    recent = final.extra["details"]["recent"]
    assert {"event": "response", "object": "helper", "status": "4"}.items() <= recent[-1].items()


def test_events2_line_with_timestamp_and_destroy() -> None:
    ev = parse_line("2026-11-23T09:10:01.000123+00:00 change resource name:r0 role:Primary")
    assert ev is not None and ev.timestamp and ev.fields == {"name": "r0", "role": "Primary"}
    st = parse_events2(fixture_text("events2-connected-secondary.txt"))
    st.feed("destroy connection name:r0 peer-node-id:1 conn-name:b1")
    status = to_status(st.state("r0"), "sync")  # type: ignore[arg-type]
    assert status.connection is SA and status.peer_disk is DU
    st.feed("destroy resource name:r0")
    assert st.state("r0") is None


PROC = {
    0: (P, UTD, S, UTD, CD, 0, False),
    1: (P, UTD, S, INC, SS, 917504 * 1024, False),
    2: (S, INC, P, UTD, ST, 500 * 1024 * 1024, False),
    3: (P, UTD, U, DU, SA, 8192 * 1024, False),
    4: (P, UTD, U, OUT, CING, 1024 * 1024, True),
    5: (S, DL, P, UTD, CD, 0, False),
    7: (S, INC, P, UTD, ST, 1019904 * 1024, False),
}


@pytest.mark.parametrize("minor", sorted(PROC))
def test_proc_drbd_84(minor: int) -> None:
    proc = parse_proc_drbd(fixture_text("proc-drbd-84.txt"), {0: "r0"})
    assert proc.version == "8.4.11-1"
    status = to_status(proc.minors[minor], "sync")
    role, disk, peer_role, peer_disk, conn, oos, suspended = PROC[minor]
    assert (status.role, status.disk, status.peer_role, status.peer_disk) == (
        role,
        disk,
        peer_role,
        peer_disk,
    )
    assert status.connection is conn
    assert status.out_of_sync_bytes == oos
    assert status.suspended is suspended
    assert status.name == ("r0" if minor == 0 else f"minor-{minor}")


def test_proc_drbd_resync_progress() -> None:
    proc = parse_proc_drbd(fixture_text("proc-drbd-84.txt"))
    source = to_status(proc.minors[1], "sync")
    assert source.percent_in_sync == 10.5
    assert source.resync_eta_seconds == 35.0
    assert source.extra["details"]["speed_kib_s"] == 25600
    assert source.extra["protocol"] == "C"
    target = to_status(proc.minors[2], "async")
    assert target.resync_eta_seconds == 20.0 and target.extra["protocol"] == "A"
    paused = to_status(proc.minors[7], "sync")
    assert paused.extra["details"]["resync_paused"] == ["user"]
    assert paused.extra["unknown_fields"] == {"zz": "9"}


def test_proc_drbd_unknown_states_and_unconfigured() -> None:
    proc = parse_proc_drbd(fixture_text("proc-drbd-84.txt"))
    weird = to_status(proc.minors[8], "sync")
    assert sorted(weird.extra["unknown_states"]) == ["connection=Wormhole", "disk=Weird"]
    assert weird.connection is SA and weird.disk is DU
    unconfigured = to_status(proc.minors[6], "sync")
    assert (unconfigured.connection, unconfigured.disk) == (SA, DL)
    assert proc.errors == []


def test_proc_drbd_garbage_is_reported_not_raised() -> None:
    proc = parse_proc_drbd("hello world\n 0: ro:Primary/Secondary\n  what is this\n")
    assert proc.errors[0].startswith("line outside any device")
    assert "minor 0: no cs: field" in proc.errors
    assert proc.minors[0].unknown_fields["lines"] == ["what is this"]


def test_follow_reports_a_resource_taken_down() -> None:
    from drorch.replication.drbd.events2 import follow
    from drorch.testing.runner import Expect, ScriptedRunner

    text = fixture_text("events2-primary-connected.txt") + "destroy resource name:r0\n"
    runner = ScriptedRunner([Expect(["drbdsetup", "events2", "--statistics", "r0"], stdout=text)])
    seen = list(follow(runner, "r0", "sync"))
    assert [s.role for s in seen] == [P, S]
    assert seen[-1].extra["up"] is False
    assert seen[-1].extra["reason"] == "the resource was taken down"
