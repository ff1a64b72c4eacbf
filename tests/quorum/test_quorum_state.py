"""Durable state: atomic writes, strict reading, --init semantics."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from drorch.quorum.grants import DurableLease
from drorch.quorum.state import QuorumState, StateError, create_state, read_state, write_state


def test_round_trip_and_no_temporary_file_left(tmp_path: Path) -> None:
    path = tmp_path / "q.state"
    state = QuorumState(3000, 2000, {"c1": DurableLease(7, "A"), "c2": DurableLease(1, None)})
    write_state(path, state)
    assert read_state(path) == state
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.state"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_rewrite_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "q.state"
    write_state(path, QuorumState(1, 1, {"c1": DurableLease(1, "A")}))
    inode = path.stat().st_ino
    write_state(path, QuorumState(1, 1, {"c1": DurableLease(2, "B")}))
    assert path.stat().st_ino != inode  # a new file renamed over the old one
    assert read_state(path).clusters["c1"] == DurableLease(2, "B")


def test_create_refuses_an_existing_state(tmp_path: Path) -> None:
    path = tmp_path / "q.state"
    create_state(path, 3000, 2000)
    assert read_state(path) == QuorumState(3000, 2000, {})
    with pytest.raises(FileExistsError, match="refusing --init"):
        create_state(path, 3000, 2000)
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    with pytest.raises(FileExistsError):
        create_state(tmp_path / "dangling", 1, 1)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("", "not valid JSON"),
        ("[]", "format 1"),
        ('{"format": 2}', "format 1"),
        ('{"format":1,"max_lease_ms":-1,"max_switch_delay_ms":1,"clusters":{}}', "max_lease_ms"),
        ('{"format":1,"max_lease_ms":1,"max_switch_delay_ms":true,"clusters":{}}', "max_switch"),
        ('{"format":1,"max_lease_ms":1,"max_switch_delay_ms":1,"clusters":[]}', "clusters"),
        (
            '{"format":1,"max_lease_ms":1,"max_switch_delay_ms":1,"clusters":{"c":{"epoch":-1}}}',
            "epoch",
        ),
        (
            '{"format":1,"max_lease_ms":1,"max_switch_delay_ms":1,"clusters":{"c":{"epoch":1,"holder":5}}}',
            "holder",
        ),
    ],
)
def test_malformed_state_is_refused(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "q.state"
    path.write_text(content)
    with pytest.raises(StateError, match=why):
        read_state(path)


def test_missing_state_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="--init"):
        read_state(tmp_path / "absent")


def test_file_format_is_plain_json(tmp_path: Path) -> None:
    path = tmp_path / "q.state"
    write_state(path, QuorumState(3000, 2000, {"c1": DurableLease(4, "B")}))
    assert json.loads(path.read_text()) == {
        "format": 1,
        "max_lease_ms": 3000,
        "max_switch_delay_ms": 2000,
        "clusters": {"c1": {"epoch": 4, "holder": "B"}},
        "outdate_serial": 0,
    }
