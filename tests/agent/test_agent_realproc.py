"""The split-brain scenarios with real processes on loopback: `drorch quorumd`, one
`drorch agent run` per site with its soft watchdog, partitions cut with userspace TCP
proxies, the takeover carried out by a real engine run: drorch's own
runbooks/site-failover.yaml (except the manual-mode story). In the stories on the `rc`
fixture the guest writes to a real sync pyrepl volume (two `repl serve` processes,
tests/agent/realvolume.py), so "A stopped writing" means its guest is off and its copy
demoted, and "B took over" includes promoting B's copy at the witness's epoch; the
monitor story and the manual/fence-agent stories keep the guest alone. Timings are sub-second
(tests/agent/realproc.py: watchdog 1.5s, lease 3s, switch_delay 0.5s, takeover_wait
3.5s), so each scenario takes seconds. The measured figures are printed (pytest -s)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drorch.runbook.journal import Journal
from tests.agent.realproc import (
    TAKEOVER_WAIT,
    WATCHDOG_TIMEOUT,
    RealCluster,
    never_both_primary,
    running,
    until,
)

SCHEDULING = 1.0  # loaded 2-core machine: a process may wake this late


@pytest.fixture
def rc(tmp_path: Path) -> Iterator[RealCluster]:
    """The guest writes to a real sync pyrepl volume (two `repl serve` processes, its
    link through cuttable proxies); B takes over with drorch's own
    runbooks/site-failover.yaml, which promotes the volume at the witness's epoch."""
    with running(tmp_path, shipped_runbook=True, volume="sync") as c:
        yield c


def _a_stopped_writing(rc: RealCluster) -> bool:
    """A's guest is off and A's copy of the volume is secondary (or its replicator is
    gone: nothing writes through it)."""
    assert rc.replicas is not None
    return rc.vm("A") != "running" and rc.replicas.status("a1").get("role") != "primary"


def _replica_role(rc: RealCluster, node: str) -> str | None:
    assert rc.replicas is not None
    return rc.replicas.status(node).get("role")


@pytest.fixture
def rc_shipped(tmp_path: Path) -> Iterator[RealCluster]:
    """The agents run drorch's own runbooks/site-failover.yaml."""
    with running(tmp_path, shipped_runbook=True) as c:
        yield c


@pytest.fixture
def rc_monitored(tmp_path: Path) -> Iterator[RealCluster]:
    with running(tmp_path, monitor=True) as c:
        yield c


def _b_logged_primary(rc: RealCluster) -> None:
    until(
        lambda: any(r["site"] == "B" and r["primary"] for r in rc.roles()),
        10,
        "B's role log to show it primary",
    )


def _journal_start(c: RealCluster) -> float:
    runs = Journal(c.state).runs()
    assert [r.runbook for r in runs] == ["site-failover"], runs
    return float(runs[0].started_at)


def test_partition_a_self_fences_before_b_takes_over_and_nothing_moves_back(
    rc: RealCluster,
) -> None:
    assert rc.vm("A") == "running" and _replica_role(rc, "a1") == "primary"
    cut = time.time()
    # A sees neither B nor the witness; B sees the witness; the replication link is cut too
    for name in ("ab", "ba", "aw", "rab", "rba"):
        rc.proxies[name].cut()
    fenced = until(lambda: _a_stopped_writing(rc), 15, "A to self-fence")
    taken = until(lambda: rc.vm("B") == "running", 20, "B to take over") + fenced
    print(f"\npartition: A fenced after {fenced:.2f}s, B running after {taken:.2f}s"
          f" (takeover_wait {TAKEOVER_WAIT:g}s)")  # fmt: skip
    assert fenced < 3.0 + SCHEDULING, "A must stop writing when its lease runs out"
    assert taken >= TAKEOVER_WAIT, "B took over before takeover_wait"
    _b_logged_primary(rc)
    roles = rc.roles()
    assert never_both_primary(roles) == []
    a_down = next(r["at"] for r in roles if r["site"] == "A" and not r["primary"])
    assert a_down < _journal_start(rc), "B's runbook started before A had fenced itself"
    assert a_down - cut < 3.0 + SCHEDULING
    until(
        lambda: (rc.status("b1") or {}).get("jobs", {}).get("takeover", {}).get("ok") is True,
        15,
        "B's site-failover run to end",
    )
    b = rc.status("b1")
    assert b is not None and b["takeover"]["reason"] == "site B already runs the cluster"
    runs = Journal(rc.state).runs()
    assert [(r.runbook, r.status, r.user) for r in runs] == [
        ("site-failover", "succeeded", "agent b1")
    ]
    assert _replica_role(rc, "b1") == "primary"

    for proxy in rc.proxies.values():  # the old site returns
        proxy.heal()
    until(rc.healthy, 15, "A to rejoin")
    time.sleep(2 * TAKEOVER_WAIT)
    assert (rc.vm("A"), rc.vm("B")) == ("shutoff", "running"), "something moved back"
    assert (_replica_role(rc, "a1"), _replica_role(rc, "b1")) == ("secondary", "primary")
    a = rc.status("a1")
    assert a is not None and a["takeover"]["reason"] == "site B is a member: nothing to take over"
    assert a["primary_here"] == []
    assert never_both_primary(rc.roles()) == []
    assert len(Journal(rc.state).runs()) == 1


def test_kill9_of_a_the_soft_watchdog_fences_then_b_takes_over(rc: RealCluster) -> None:
    a = rc.status("a1")
    assert a is not None and a["watchdog"]["feeds"] > 0
    killed = time.time()
    rc.signal("a1", signal.SIGKILL)
    until(lambda: rc.softdog_fired("a1") is not None, 10, "A's soft watchdog to fire")
    fired = rc.softdog_fired("a1")
    assert fired is not None and fired["commands"][0]["rc"] == 0
    fired_after = float(fired["at"]) - killed
    until(lambda: _a_stopped_writing(rc), 10, "A's guest to stop and its volume to demote")
    seen_stopped = time.time()
    stopped_after = seen_stopped - killed
    until(lambda: rc.vm("B") == "running", 20, "B to take over")
    taken_after = time.time() - killed
    print(f"\nkill -9: watchdog fired {fired_after:.2f}s after (timeout"
          f" {WATCHDOG_TIMEOUT:g}s), guest stopped {stopped_after:.2f}s after;"
          f" B running {taken_after:.2f}s after (takeover_wait {TAKEOVER_WAIT:g}s)")  # fmt: skip
    assert fired_after <= WATCHDOG_TIMEOUT + 0.3, "the watchdog fired late"
    # the sim's guests are stopped by the supervisor's command (`drorch agent self-fence`,
    # a Python start); real QEMU pids in --kill-pidfile die at the fire itself
    assert stopped_after <= WATCHDOG_TIMEOUT + SCHEDULING + 2.0
    assert taken_after >= TAKEOVER_WAIT
    _b_logged_primary(rc)
    assert never_both_primary(rc.roles(), {"A": seen_stopped}) == []


def test_sigstop_of_a_the_soft_watchdog_fires(rc: RealCluster) -> None:
    stopped = time.time()
    rc.signal("a1", signal.SIGSTOP)
    until(lambda: rc.softdog_fired("a1") is not None, 10, "A's soft watchdog to fire")
    fired = rc.softdog_fired("a1")
    assert fired is not None
    assert float(fired["at"]) - stopped <= WATCHDOG_TIMEOUT + 0.3
    until(lambda: _a_stopped_writing(rc), 10, "A's guest to stop and its volume to demote")
    seen_stopped = time.time()
    until(lambda: rc.vm("B") == "running", 20, "B to take over")
    rc.signal("a1", signal.SIGCONT)  # the frozen agent wakes up: it must not write again
    time.sleep(TAKEOVER_WAIT)
    assert rc.vm("A") == "shutoff"
    assert (_replica_role(rc, "a1"), _replica_role(rc, "b1")) == ("secondary", "primary")
    _b_logged_primary(rc)
    assert never_both_primary(rc.roles(), {"A": seen_stopped}) == []


def test_witness_down_both_healthy_nothing_moves(rc: RealCluster) -> None:
    rc.stop_witness()
    time.sleep(3 * TAKEOVER_WAIT)
    assert (rc.vm("A"), rc.vm("B")) == ("running", "undefined")
    assert (_replica_role(rc, "a1"), _replica_role(rc, "b1")) == ("primary", "secondary")
    assert rc.softdog_fired("a1") is None and rc.softdog_fired("b1") is None
    a = rc.status("a1")
    assert a is not None and a["quorum"]["reason"] == "majority: 2 of 2 nodes are members"
    w = a["watchdog"]
    print(f"\nwatchdog at A over {3 * TAKEOVER_WAIT:g}s: {w['feeds']} feeds, min slack"
          f" {w['min_slack']}s, median {w['median_slack']}s of {WATCHDOG_TIMEOUT:g}s,"
          f" late feeds {w['late_feeds']}")  # fmt: skip
    assert w["fed"] and w["late_feeds"] == 0


def test_witness_down_and_a_killed_nothing_promotes_and_b_says_why(rc: RealCluster) -> None:
    rc.stop_witness()
    rc.signal("a1", signal.SIGKILL)
    until(lambda: _a_stopped_writing(rc), 10, "A's soft watchdog to fence its guest")
    time.sleep(2 * TAKEOVER_WAIT)
    assert rc.vm("B") == "undefined", "B promoted without a tiebreaker"
    assert _replica_role(rc, "b1") == "secondary", "B promoted without a tiebreaker"
    done = rc.cli("agent", "status", "-c", str(rc.cfgs["b1"]), "--node", "b1", "--format", "json")
    assert done.returncode == 0, done.stderr
    b = json.loads(done.stdout)
    assert b["takeover"]["action"] == "none"
    assert b["takeover"]["reason"].startswith("site A lost ")
    assert b["takeover"]["reason"].endswith(
        "but site B has no quorum: exactly half (1 of 2 nodes) and the witness is"
        " unreachable: no tiebreaker"
    )
    assert Journal(rc.state).runs() == []


def test_a_monitor_failing_three_times_escalates_the_group(rc_monitored: RealCluster) -> None:
    rc = rc_monitored
    a = rc.status("a1")
    assert a is not None and a["monitors"]["db-alive"]["state"] == "ok"
    rc.flag.unlink()  # the guest's level-1 check fails from now on
    until(lambda: (rc.tmp / "escalated.log").exists(), 20, "the escalation runbook")
    assert "moving db to B" in (rc.tmp / "escalated.log").read_text()
    a = rc.status("a1")
    assert a is not None
    assert a["monitors"]["db-alive"]["state"] == "failed"
    assert a["monitors"]["db-alive"]["recovery"].startswith("escalat")
    until(
        lambda: (rc.status("a1") or {})["jobs"]["escalations"][0]["ok"] is True,
        10,
        "the escalation run to be reported done",
    )
    a = rc.status("a1")
    assert a is not None
    assert a["jobs"]["escalations"][0]["group"] == ["vm db"]
    log = (rc.tmp / "a1.log").read_text()
    assert "restart 1 of 2 in place" in log and "restart 2 of 2 in place" in log
    assert "escalate to moving its group" in log
    assert a["watchdog"]["fed"], "an escalated level-1 failure must not fence the site"
    done = rc.cli("agent", "status", "-c", str(rc.cfgs["a1"]), "--node", "a1")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    header = next(r for r in rows if r[:2] == ["MONITOR", "RESOURCE"])
    row = next(r for r in rows if r and r[0] == "db-alive")
    assert header[:5] == ["MONITOR", "RESOURCE", "LEVEL", "STATE", "REASON"], header
    assert row[1:5] == ["vm", "db", "1", "failed"], row
    assert any(r and r[0] == "escalations" for r in rows), done.stdout


def test_site_a_lost_b_takes_over_with_the_shipped_runbook(rc_shipped: RealCluster) -> None:
    """The whole of site A goes: its agent and watchdog die with it and its hypervisor
    answers nothing. B's agent runs drorch's own runbooks/site-failover.yaml."""
    rc = rc_shipped
    a = rc.status("a1")
    assert a is not None
    lost = time.time()  # the power-off stops A's guest at once
    rc.signal("a1", signal.SIGKILL)
    os.kill(int(a["watchdog"]["pid"]), signal.SIGKILL)
    done = rc.cli("sim", "power-off", "A", "-c", str(rc.cfg))
    assert done.returncode == 0, done.stderr
    off = time.time()
    taken = until(lambda: rc.vm("B") == "running", 40, "B to take over")
    print(f"\nsite A lost: B running after {taken:.2f}s with the shipped runbook"
          f" (takeover_wait {TAKEOVER_WAIT:g}s)")  # fmt: skip
    assert time.time() - lost >= TAKEOVER_WAIT
    until(
        lambda: (rc.status("b1") or {}).get("jobs", {}).get("takeover", {}).get("ok") is not None,
        30,
        "B's site-failover run to end",
    )
    b = rc.status("b1")
    assert b is not None and b["jobs"]["takeover"]["ok"] is True, b["jobs"]
    runs = Journal(rc.state).runs()
    assert [(r.runbook, r.status, r.user) for r in runs] == [
        ("site-failover", "succeeded", "agent b1")
    ]
    _b_logged_primary(rc)
    assert never_both_primary(rc.roles(), {"A": off}) == []


@pytest.fixture
def rc_manual(tmp_path: Path) -> Iterator[RealCluster]:
    with running(tmp_path, failover="manual") as c:
        yield c


def test_manual_mode_b_is_ready_and_waits_for_drorch_failover(rc_manual: RealCluster) -> None:
    rc = rc_manual
    a = rc.status("a1")
    assert a is not None
    rc.signal("a1", signal.SIGKILL)
    os.kill(int(a["watchdog"]["pid"]), signal.SIGKILL)
    assert rc.cli("sim", "power-off", "A", "-c", str(rc.cfg)).returncode == 0

    def ready() -> bool:
        return (rc.status("b1") or {}).get("takeover", {}).get("action") == "ready"

    until(ready, 20, "B to be ready to take over")
    time.sleep(TAKEOVER_WAIT)  # it waits: nothing runs at B until an operator says so
    assert rc.vm("B") == "undefined" and Journal(rc.state).runs() == []
    b = rc.status("b1")
    assert b is not None
    assert b["takeover"]["reason"].startswith("ready to take over, because site A lost ")
    assert b["takeover"]["reason"].endswith("run `drorch failover --to B`")
    done = rc.cli("failover", "--to", "B", "-c", str(rc.cfg), "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert rc.vm("B") == "running"
    until(
        lambda: (
            (rc.status("b1") or {}).get("takeover", {}).get("reason")
            == "site B already runs the cluster"
        ),
        10,
        "B's agent to see that it runs the cluster",
    )


@pytest.fixture
def rc_fenced(tmp_path: Path) -> Iterator[RealCluster]:
    """Site A names a fence agent: the real fence_virsh over a real sshd, with a stand-in
    virsh (tests/fencing/test_fence_agent.py); takeover_wait is set to 15s."""
    from tests.fencing.test_fence_agent import STANDIN
    from tests.sshd_server import private_sshd

    hv = tmp_path / "hv"
    hv.mkdir()
    (hv / "standin").write_text(STANDIN)
    (hv / "standin").chmod(0o755)
    (hv / "state").write_text("running\n")
    (tmp_path / "sshd").mkdir()
    with private_sshd(tmp_path / "sshd") as sshd:
        fence = {
            "agent": "fence_virsh",
            "timeout": "20s",
            "options": {
                "ip": "127.0.0.1",
                "ipport": str(sshd.port),
                "username": sshd.user,
                "identity_file": str(sshd.client_key),
                "ssh_path": f"/usr/bin/ssh -o UserKnownHostsFile={sshd.known_hosts}",
                "plug": "rp-db",
                "use_sudo": "1",
                "sudo_path": str(hv / "standin"),
                "power_timeout": "5",
            },
        }
        with running(tmp_path, shipped_runbook=True, fence_a=fence, takeover_wait="15s") as c:
            yield c


def test_a_confirmed_fence_skips_the_rest_of_takeover_wait(rc_fenced: RealCluster) -> None:
    rc = rc_fenced
    a = rc.status("a1")
    assert a is not None
    lost = time.time()
    rc.signal("a1", signal.SIGKILL)
    os.kill(int(a["watchdog"]["pid"]), signal.SIGKILL)
    assert rc.cli("sim", "power-off", "A", "-c", str(rc.cfg)).returncode == 0
    until(lambda: rc.vm("B") == "running", 30, "B to take over")
    taken = time.time() - lost
    print(f"\nconfirmed fence: B running after {taken:.2f}s (takeover_wait 15s)")
    assert taken < 1.0 + 15.0, "a confirmed fence did not shorten the wait"
    b = rc.status("b1")
    assert b is not None
    assert b["jobs"]["fence"]["ok"] is True
    assert b["jobs"]["fence"]["message"].startswith("fence_virsh confirmed site A off")
    assert (rc.tmp / "hv" / "state").read_text().strip() == "shut off"
