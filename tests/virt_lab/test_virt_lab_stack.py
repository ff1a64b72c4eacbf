"""The whole lab cluster (`drorch lab up --vms 1 --mode sync`): witness, WAN proxy,
replicated guest, agents. Idempotent; then site A loses power (`lab fault kill-site A`):
B's agent takes over on its own after takeover_wait, the guest boots at B from B's
replica and counts on from at least the last value A's disk acknowledged (RPO 0 in
sync mode); `lab down` leaves no process and no namespace."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from drorch.cli.main import cli
from drorch.lab.faults import namespace_pids
from drorch.lab.layout import LabLayout
from drorch.lab.stack_status import last_acked

pytestmark = pytest.mark.lab

OPTS = ["--name", "pytest-stack", "--prefix", "ds", "--subnet", "10.77.65"]
LAYOUT = LabLayout(name="pytest-stack", prefix="ds", subnet="10.77.65")
TAKEOVER_WAIT = 9.0  # lease_timeout 6 s + switch_delay 3 s in the generated file


def lab(*args: str) -> str:
    result = CliRunner().invoke(cli, ["lab", *args, *OPTS])
    assert result.exit_code == 0, result.output
    return result.stdout


def parts() -> dict[str, dict[str, Any]]:
    status = json.loads(lab("status", "--format", "json"))
    return {row["part"]: row for row in status.get("cluster", [])}


def until(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def boots_after(log: Path, offset: int) -> list[int]:
    text = log.read_bytes()[offset:].decode(errors="replace")
    return [int(n) for n in re.findall(r"LABVM BOOTED \S+ start_counter=(\d+)", text)]


def test_whole_lab_cold_failover_without_losing_an_acked_counter() -> None:
    try:
        lab("up", "--vms", "1", "--mode", "sync")
        first = parts()
        for name in ("wan-proxy", "quorumd", "agent-siteA", "agent-siteB"):
            assert first[name]["pid"] and first[name]["state"] in ("running", "no impairment")
        assert first["repl-vm1-disk@a1"]["state"] == "primary, UpToDate, Connected"
        assert first["repl-vm1-disk@b1"]["state"] == "secondary, UpToDate, Connected"
        assert first["guest vm1"]["where"] == "siteA"
        assert first["quorumd"]["where"] == "dswitness"

        lab("up", "--vms", "1", "--mode", "sync")  # idempotent: nothing restarted
        again = parts()
        assert {k: v["pid"] for k, v in again.items()} == {k: v["pid"] for k, v in first.items()}

        serial = LAYOUT.guest_dir / "vm1.serial.log"
        until("three acknowledged counter values", lambda: (last_acked(serial) or 0) >= 3, 60)
        offset = serial.stat().st_size
        lab("fault", "kill-site", "A")
        killed_at = time.monotonic()
        acked_at_a = last_acked(serial)
        assert acked_at_a is not None

        booted = until("the guest to boot at B", lambda: boots_after(serial, offset), 90)
        rto = time.monotonic() - killed_at
        assert booted[0] >= acked_at_a, f"acknowledged values lost: {acked_at_a} -> {booted[0]}"
        assert rto >= TAKEOVER_WAIT, f"took over after {rto:.1f} s, before takeover_wait"
        assert rto <= TAKEOVER_WAIT + 60
        after = parts()
        assert after["guest vm1"]["where"] == "siteB"
        assert after["repl-vm1-disk@b1"]["state"].startswith("primary")
        events = json.loads(lab("events", "--format", "json"))
        assert events[-1]["kind"] == "kill-site" and events[-1]["target"] == "A"
        print(f"RTO {rto:.1f} s; last acked at A {acked_at_a}; B started at {booted[0]}")
    finally:
        lab("down")
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not re.search(r"^ds", names, re.M), names
    for ns in ("dssiteA", "dssiteB", "dswitness", "dswan"):
        assert namespace_pids(ns) == []
