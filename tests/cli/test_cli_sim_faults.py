"""`drorch sim` changes the simulated world and the drivers answer as real ones would:
the stories of the mission rehearsed without root."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from drorch.cli.main import cli


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def status(cfg: Path) -> tuple[int, dict[str, Any]]:
    r = run("status", "-c", str(cfg), "--format", "json")
    return r.exit_code, json.loads(r.stdout)


def codes(data: dict[str, Any]) -> set[str]:
    return {p["code"] for p in data["problems"]}


def _power_off_ago(cfg: Path, site: str, seconds: float) -> None:
    marker = cfg.parent / ".drorch-state" / f"sim-{site}.down"
    marker.write_text(f"{time.time() - seconds}\n")


def test_power_loss_at_a_then_a_runnable_failover_once_fenced(lab_config: Path) -> None:
    c = str(lab_config)
    assert run("sim", "power-off", "A", "-c", c).exit_code == 0
    rc, data = status(lab_config)
    assert rc == 2 and {"site-unreachable", "unobserved", "replication-not-connected"} <= codes(
        data
    )
    assert [s["reachable"] for s in data["sites"]] == [False, True]
    early = run("plan", "failover", "--to", "B", "-c", c, "--format", "json")
    plan = json.loads(early.stdout)
    first = [st["action"] for st in plan["steps"][:2]]
    assert first == ["confirm-fenced", "wait-takeover"], "not fenced yet: the plan must wait"
    assert "is not confirmed fenced" in plan["steps"][0]["reason"]
    _power_off_ago(lab_config, "A", 60)  # the witness's lease for A ran out long ago
    late = run("plan", "failover", "--to", "B", "-c", c, "--format", "json")
    assert late.exit_code == 0, late.output
    plan = json.loads(late.stdout)
    assert plan["runnable"] and plan["steps"][0]["action"] == "confirm-fenced"
    assert plan["steps"][1]["action"] != "wait-takeover"
    assert (
        "simulated: powered off 60s ago; its lease expired at the witness"
        in plan["steps"][0]["reason"]
    )


def test_witness_down_nothing_confirms_the_fence(lab_config: Path) -> None:
    c = str(lab_config)
    run("sim", "power-off", "A", "-c", c)
    run("sim", "kill-witness", "-c", c)
    _power_off_ago(lab_config, "A", 60)
    r = run("plan", "failover", "--to", "B", "-c", c, "--format", "json")
    assert r.exit_code == 1, r.output  # blocked, never "runnable"
    plan = json.loads(r.stdout)
    assert not plan["runnable"] and plan["blocking"] == ["witness-unreachable"]
    assert plan["needs_data_loss_ack"]
    assert "is not confirmed fenced, and cannot be" in plan["steps"][0]["reason"]
    assert plan["steps"][1]["action"] == "wait-takeover"
    table = run("plan", "failover", "--to", "B", "-c", c)
    assert table.stdout.startswith(
        "failover A -> B: 15 steps, BLOCKED, needs a data-loss acknowledgement\n"
    )
    assert "bring it back (`drorch sim revive-witness`)" in table.stdout
    assert "[witness-unreachable, forceable with --force]" in table.stdout
    forced = run("plan", "failover", "--to", "B", "-c", c, "--force")
    assert forced.exit_code == 0 and "runnable with --force" in forced.stdout
    rc, data = status(lab_config)
    assert rc == 2 and "witness-unreachable" in codes(data)  # A is lost too: broken
    # the witness is back: A's lease ran out long ago, so A is confirmed fenced
    assert run("sim", "revive-witness", "-c", c).exit_code == 0
    back = run("plan", "failover", "--to", "B", "-c", c, "--format", "json")
    assert back.exit_code == 0 and json.loads(back.stdout)["runnable"]
    assert "witness-unreachable" not in codes(status(lab_config)[1])


def test_power_on_brings_replicas_back_secondary_with_vms_off(lab_config: Path) -> None:
    c = str(lab_config)
    run("sim", "power-off", "A", "-c", c)
    assert run("sim", "power-on", "A", "-c", c).exit_code == 0
    rc, data = status(lab_config)
    roles = {(r["volume"], r["node"]): (r["role"], r["connection"]) for r in data["replication"]}
    assert roles[("dbdata", "a1")] == ("secondary", "Connected")
    assert rc == 2 and "vm-stopped" in codes(data), "every VM is off: an outage, not healthy"


def test_partition_and_heal(lab_config: Path) -> None:
    c = str(lab_config)
    run("sim", "partition", "-c", c)
    rc, data = status(lab_config)
    assert rc == 1 and codes(data) == {"replication-not-connected"}
    run("sim", "heal", "-c", c)
    assert status(lab_config)[0] == 0


def test_break_replication_and_crash_vm(lab_config: Path) -> None:
    c = str(lab_config)
    assert run("sim", "break-replication", "dbdata", "-c", c).exit_code == 0
    rc, data = status(lab_config)
    conns = {r["connection"] for r in data["replication"] if r["volume"] == "dbdata"}
    assert conns == {"StandAlone"} and rc == 1
    crashed = run("sim", "crash-vm", "web", "-c", c)
    assert crashed.exit_code == 0 and crashed.stdout.strip() == "web crashed at site A"
    rc, data = status(lab_config)
    assert rc == 2 and "vm-crashed" in codes(data)
    died = run("sim", "crash-vm", "db", "--state", "shutoff", "-c", c)
    assert died.exit_code == 0 and died.stdout.strip() == "db shutoff at site A"


def test_bad_fault_arguments(lab_config: Path) -> None:
    r = run("sim", "power-off", "Z", "-c", str(lab_config))
    assert r.exit_code == 2 and "drorch: error: no site 'Z' (sites: A, B)" in r.stderr
    r = run("sim", "crash-vm", "nope", "-c", str(lab_config))
    assert r.exit_code == 2 and "no VM 'nope'" in r.stderr
    r = run("sim", "break-replication", "nope", "-c", str(lab_config))
    assert r.exit_code == 2 and "no volume 'nope'" in r.stderr


def test_a_fault_that_cannot_apply_fails(lab_config: Path) -> None:
    assert run("sim", "power-off", "A", "-c", str(lab_config)).exit_code == 0
    r = run("sim", "crash-vm", "web", "-c", str(lab_config))
    assert r.exit_code == 1 and "web is not running at any reachable site" in r.stderr


def test_witness_down_blocks_a_planned_migration_too(lab_config: Path) -> None:
    c = str(lab_config)
    run("sim", "kill-witness", "-c", c)
    r = run("plan", "migrate", "--to", "B", "-c", c, "--format", "json")
    assert r.exit_code == 1 and json.loads(r.stdout)["blocking"] == ["witness-unreachable"]
    run("sim", "revive-witness", "-c", c)
    assert run("plan", "migrate", "--to", "B", "-c", c).exit_code == 0
