"""The old site returns after a failover and rejoins as SECONDARY, all real: `drorch
quorumd`, one `drorch agent run` per site with its soft watchdog, two `drorch repl serve`
processes for the guest's volume (tests/agent/realvolume.py), B's takeover by drorch's
own runbooks/site-failover.yaml, partitions cut with userspace TCP proxies.

- partition (A sees neither B nor the witness): A self-fences (guest destroyed, volume
  demoted) before B takes over; B promotes at the witness's new epoch and writes; the
  link heals; A's copy resyncs from B as a sync target, its agent status shows it, and
  nothing moves back;
- the whole of site A is lost (agent, watchdog, replicator and guest killed); B takes
  over and writes; A's agent starts again: it starts its replica as secondary (never
  primary), which resyncs from B;
- async: A acknowledged writes alone during the partition, so both copies changed while
  apart (a split brain of data); A's agent sees that the witness granted B a newer
  epoch, discards A's changes and resyncs from B; B's agent dials again.

At no instant are both sites primary (role logs from both sides, volumes included).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drorch.runbook.journal import Journal
from tests.agent.realproc import TAKEOVER_WAIT, RealCluster, never_both_primary, running, until
from tests.agent.realvolume import Replicas

MIB = 1024 * 1024
CUT = ("ab", "ba", "aw", "rab", "rba")  # A sees neither B nor the witness; B sees the witness


@pytest.fixture
def rc_sync(tmp_path: Path) -> Iterator[RealCluster]:
    with running(tmp_path, shipped_runbook=True, volume="sync") as c:
        yield c


@pytest.fixture
def rc_async(tmp_path: Path) -> Iterator[RealCluster]:
    with running(tmp_path, shipped_runbook=True, volume="async") as c:
        yield c


def _replicas(rc: RealCluster) -> Replicas:
    assert rc.replicas is not None
    return rc.replicas


def _takeover_done(rc: RealCluster) -> None:
    until(lambda: rc.vm("B") == "running", 40, "B to take over")
    until(
        lambda: (rc.status("b1") or {}).get("jobs", {}).get("takeover", {}).get("ok") is not None,
        40,
        "B's site-failover run to end",
    )
    b = rc.status("b1")
    assert b is not None and b["jobs"]["takeover"]["ok"] is True, b["jobs"]
    assert [(r.runbook, r.status) for r in Journal(rc.state).runs()] == [
        ("site-failover", "succeeded")
    ]


def _watch_resync(rc: RealCluster, timeout: float) -> list[dict[str, Any]]:
    """Poll A's agent status until its copy is back in sync; every distinct row seen."""
    rows: list[dict[str, Any]] = []

    def in_sync() -> bool:
        row = ((rc.status("a1") or {}).get("replicas") or {}).get("data")
        if row and (not rows or row != rows[-1]):
            rows.append(row)
        return bool(
            row
            and row["role"] == "secondary"
            and row["connection"] == "Connected"
            and row["disk"] == "UpToDate"
        )

    until(in_sync, timeout, "A's copy to resync from B", step=0.02)
    return rows


def test_partition_then_heal_a_rejoins_as_secondary_and_resyncs(rc_sync: RealCluster) -> None:
    rc, r = rc_sync, _replicas(rc_sync)
    assert r.status("a1")["role"] == "primary" and r.status("b1")["disk"] == "UpToDate"
    epoch_a = r.status("a1")["epoch"]
    for name in CUT:
        rc.proxies[name].cut()
    until(lambda: r.status("a1").get("role") == "secondary", 15, "A to demote its copy")
    _takeover_done(rc)
    b = r.status("b1")
    assert b["role"] == "primary" and b["epoch"] > epoch_a, b
    r.write("b1", 0x5B, 0, 4 * MIB)  # frozen until B's hook records A outdated, then on
    assert r.status("b1")["extra"]["peer_outdated"] is True
    assert not r.holds("a1", 0x5B, 0, 4 * MIB)

    healed = time.monotonic()
    for name in ("rab", "rba"):
        rc.proxies[name].rate = 2 * MIB  # a slow link, so that the resync can be watched
    for proxy in rc.proxies.values():
        proxy.heal()
    rows = _watch_resync(rc, 40)
    resynced = time.monotonic() - healed
    print(f"\nrejoin after a partition: A in sync {resynced:.2f}s after the heal;"
          f" rows seen at A: {[row['reason'] for row in rows]}")  # fmt: skip
    assert r.holds("a1", 0x5B, 0, 4 * MIB), "A's copy lacks B's writes after the resync"
    a = r.status("a1")
    assert a["role"] == "secondary" and a["epoch"] == b["epoch"]
    assert a["extra"]["resync"]["total_bytes"] >= 4 * MIB
    assert r.status("b1")["role"] == "primary"
    syncing = [row for row in rows if row["connection"] == "SyncTarget"]
    assert syncing, "A's agent status never showed the resync"
    assert syncing[0]["reason"].startswith("secondary, resyncing from B: ")
    assert syncing[-1]["percent_in_sync"] > syncing[0]["percent_in_sync"], syncing
    last = rows[-1]
    assert last["action"] == "none" and last["reason"] == "secondary, Connected, disk UpToDate"
    until(
        lambda: r.status("b1")["extra"]["peer_outdated"] is False,
        15,
        "B's unfence hook to clear A's outdate record at the witness",
    )
    time.sleep(TAKEOVER_WAIT)  # the old site is back: nothing moves back
    assert (rc.vm("A"), rc.vm("B")) == ("shutoff", "running")
    assert r.status("a1")["role"] == "secondary" and r.status("b1")["role"] == "primary"
    assert never_both_primary(rc.roles()) == []
    assert len(Journal(rc.state).runs()) == 1


def test_site_a_lost_then_restarted_its_agent_starts_the_replica_as_secondary(
    rc_sync: RealCluster,
) -> None:
    rc, r = rc_sync, _replicas(rc_sync)
    a = rc.status("a1")
    assert a is not None
    rc.signal("a1", signal.SIGKILL)  # the whole site: agent, watchdog, replicator, guest
    os.kill(int(a["watchdog"]["pid"]), signal.SIGKILL)
    r.kill("a1")
    assert rc.cli("sim", "power-off", "A", "-c", str(rc.cfg)).returncode == 0
    lost = time.time()
    _takeover_done(rc)
    assert time.time() - lost >= TAKEOVER_WAIT
    r.write("b1", 0x6C, 2 * MIB, 2 * MIB)

    assert rc.cli("sim", "power-on", "A", "-c", str(rc.cfg)).returncode == 0
    rc.procs.pop("a1").wait(timeout=10)
    rc.start_agent("a1")  # A's agent comes back with its site; no replicator runs there
    rows = _watch_resync(rc, 60)
    reasons = [row["reason"] for row in rows]
    print(f"\nrejoin after a site loss: rows seen at A: {reasons}")
    assert r.holds("a1", 0x6C, 2 * MIB, 2 * MIB)
    a = rc.status("a1")
    assert a is not None and a["primary_here"] == []
    assert any(
        line.startswith("start data: ok: data started as secondary")
        for line in a["jobs"]["rejoined"]
    ), a["jobs"]
    assert r.status("b1")["role"] == "primary" and rc.vm("A") == "shutoff"
    assert never_both_primary(rc.roles(), {"A": lost}) == []


def test_async_split_brain_the_fenced_side_discards_and_resyncs(rc_async: RealCluster) -> None:
    rc, r = rc_async, _replicas(rc_async)
    for name in CUT:
        rc.proxies[name].cut()
    r.write("a1", 0xA1, 8 * MIB, 1 * MIB)  # async: acknowledged at A alone
    until(lambda: r.status("a1").get("role") == "secondary", 15, "A to demote its copy")
    _takeover_done(rc)
    r.write("b1", 0xB1, 0, 1 * MIB)
    for proxy in rc.proxies.values():
        proxy.heal()
    rows = _watch_resync(rc, 60)
    reasons = [row["reason"] for row in rows]
    print(f"\nasync split brain: rows seen at A: {reasons}")
    assert any(row["action"] == "discard-local" for row in rows), reasons
    assert r.holds("a1", 0xB1, 0, 1 * MIB), "A lacks B's writes"
    assert not r.holds("a1", 0xA1, 8 * MIB, 1 * MIB), "A kept writes B never had"
    assert r.status("b1")["role"] == "primary"
    log = (rc.tmp / "a1.log").read_text()
    assert "rejoin: discard-local data: split brain, and the witness granted site B" in log
    assert never_both_primary(rc.roles()) == []
    done = rc.cli("agent", "status", "-c", str(rc.cfgs["a1"]), "--node", "a1", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["replicas"]["data"]["role"] == "secondary"
    done = rc.cli("agent", "status", "-c", str(rc.cfgs["a1"]), "--node", "a1")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    header = next(r for r in rows if r[:2] == ["VOLUME", "ROLE"])
    assert header[:5] == ["VOLUME", "ROLE", "DISK", "CONNECTION", "EPOCH"], header
    row = next(r for r in rows if r and r[0] == "data")
    assert row[1:5] == ["secondary", "UpToDate", "Connected", "2"], row
    assert any(r[:4] == ["rejoined", "discard-local", "data:", "ok:"] for r in rows), done.stdout


@pytest.fixture
def rc_escalating(tmp_path: Path) -> Iterator[RealCluster]:
    """The guest's level-1 monitor is a command on a flag file; escalation runs drorch's
    own default escalate_runbook (runbooks/hurricane-planned-migration.yaml)."""
    with running(
        tmp_path, shipped_runbook=True, volume="sync", monitor=True, shipped_escalation=True
    ) as c:
        yield c


def test_a_failing_guest_moves_with_its_group_to_b(rc_escalating: RealCluster) -> None:
    """db's level-1 check fails at A: restarted in place twice, then its group is
    escalated to the shipped planned-migration runbook: the guest stopped at A, its volume
    switched (A demoted, B promoted at the next epoch), the guest started at B and
    verified there, the lease handed to B. A stays secondary; nothing is fenced."""
    rc, r = rc_escalating, _replicas(rc_escalating)
    rc.flag.unlink()

    def escalating() -> bool:
        jobs = (rc.status("a1") or {}).get("jobs", {})
        return bool(jobs.get("escalations"))

    until(escalating, 30, "the group's escalation to start")
    # the check passes again where the guest goes (the flag is one file for both sites:
    # B's verify step must see it; the group is already being moved)
    rc.flag.touch()
    until(lambda: rc.vm("B") == "running", 90, "the escalation to move db to B")
    until(
        lambda: (
            ((rc.status("a1") or {}).get("jobs", {}).get("escalations") or [{}])[0].get("ok")
            is not None
        ),
        90,
        "the escalation run to end",
    )
    a = rc.status("a1")
    assert a is not None
    esc = a["jobs"]["escalations"]
    assert len(esc) == 1 and esc[0]["group"] == ["vm db"] and esc[0]["ok"] is True, esc
    log = (rc.tmp / "a1.log").read_text()
    assert "restart 1 of 2 in place" in log and "restart 2 of 2 in place" in log
    assert (r.status("a1")["role"], r.status("b1")["role"]) == ("secondary", "primary")
    runs = Journal(rc.state).runs()
    assert [(x.runbook, x.status) for x in runs] == [("hurricane-planned-migration", "succeeded")]
    assert rc.softdog_fired("a1") is None and rc.softdog_fired("b1") is None
    time.sleep(TAKEOVER_WAIT)
    assert (rc.vm("A"), rc.vm("B")) == ("shutoff", "running"), "something moved back"
    b = rc.status("b1")
    assert b is not None and b["watchdog"]["fed"], b["watchdog"]
    # A planned move is ordered by the run itself: A's copy demoted before B's promoted
    # (and pyrepl refuses a promotion beside a connected primary). The role logs are each
    # agent's observation, a cycle late at most: they may overlap by that much here.
    events = Journal(rc.state).events(runs[0].run_id)
    ended = {e.step: e.at for e in events if e.kind == "end" and e.status == "ok"}
    started = {e.step: e.at for e in reversed(events) if e.kind == "start"}
    demoted, promoted = ended["move/03-demote-data"], started["move/04-promote-data"]
    assert demoted <= promoted, (demoted, promoted)
    overlap = _overlap(rc.roles())
    assert overlap <= HEARTBEAT + SCHEDULING, f"both logged primary for {overlap:.3f}s"
    print(f"\nescalation: A demoted {promoted - demoted:.3f}s before B's promotion began;"
          f" role logs overlap {overlap:.3f}s (agent heartbeat {HEARTBEAT}s)")  # fmt: skip


HEARTBEAT, SCHEDULING = 0.25, 1.0


def _overlap(roles: list[dict[str, Any]]) -> float:
    """Seconds during which both sites' role logs said primary."""
    now: dict[str, bool] = {}
    both_since: float | None = None
    total = 0.0
    for r in roles:
        now[r["site"]] = bool(r["primary"])
        both = len(now) == 2 and all(now.values())
        if both and both_since is None:
            both_since = float(r["at"])
        elif not both and both_since is not None:
            total += float(r["at"]) - both_since
            both_since = None
    return total
