"""A guest that dies to `shutoff` (libvirt's default on_crash, or its OS powering off)
while its site runs it is restarted in place under its restart budget and escalated past
it, like a `crashed` one. A guest stopped on purpose (a drorch run holds the cluster, or
its volumes are not primary here any more) stays stopped. lab/sim.yaml on the simulated
hypervisor, FakeClock, the agent's own EnvResources and monitors."""

from __future__ import annotations

from pathlib import Path

from drorch.agent.health import LocalHealth
from drorch.agent.jobs import Job
from drorch.agent.monitors_build import build_health
from drorch.agent.resources import EnvResources
from drorch.model.states import VMState
from drorch.virt.sim_world import crash_vm
from tests.runbook.steps_lab import SimLab


def _agent(
    tmp_path: Path, busy: list[str | None], edit: dict[str, str] | None = None
) -> tuple[SimLab, EnvResources, LocalHealth, list[tuple[str, ...]]]:
    lab = SimLab(tmp_path, edit)
    escalated: list[tuple[str, ...]] = []

    def escalate(group: tuple[str, ...], reason: str) -> Job:
        escalated.append(group)
        job = Job("escalate", lambda: (True, "moved"), lab.clock)
        job.run_here()
        return job

    res = EnvResources(lab.cluster, "a1", lab.env, run_busy=lambda: busy[0])
    health = build_health(lab.cluster, "a1", lab.env, res, tmp_path, lab.clock, escalate)
    health.start_job = Job.run_here  # the FakeClock does not move while a restart runs
    return lab, res, health, escalated


def _cycles(lab: SimLab, res: EnvResources, health: LocalHealth, seconds: int) -> list[str]:
    acted: list[str] = []
    for _ in range(seconds):  # bounded: one cycle per simulated second
        res.primary_here()
        health.poll(res.local_resources())
        acted += health.act()
        lab.clock.advance(1.0)
    return acted


def _web(lab: SimLab) -> str:
    return lab.env.hypervisor("A").state("drorch-web").value


def test_a_guest_dead_to_shutoff_is_restarted_in_place_then_escalated(tmp_path: Path) -> None:
    lab, res, health, escalated = _agent(tmp_path, [None])
    try:
        assert _cycles(lab, res, health, 3) == [] and _web(lab) == "running"
        assert crash_vm(lab.cluster, lab.env, "web", VMState.SHUTOFF) == "A"  # died
        assert "vm web" in res.local_resources(), "a guest that should run is still here"
        acted = _cycles(lab, res, health, 25)
        assert any("vm web restarted at site A" in a for a in acted), acted
        assert _web(lab) == "running" and escalated == []
        for _ in range(3):  # it keeps dying: past max_restarts its group is escalated
            lab.env.hypervisor("A").destroy("drorch-web")
            acted += _cycles(lab, res, health, 25)
        assert sum("vm web restarted" in a for a in acted) == 2, acted
        assert escalated and "vm web" in escalated[0], acted
    finally:
        health.close()


def test_a_guest_stopped_under_a_drorch_run_stays_stopped(tmp_path: Path) -> None:
    busy: list[str | None] = [None]
    lab, res, health, escalated = _agent(tmp_path, busy)
    try:
        _cycles(lab, res, health, 3)
        busy[0] = "run-1"  # a runbook holds the cluster and stops web on purpose
        lab.env.hypervisor("A").destroy("drorch-web")
        _cycles(lab, res, health, 2)
        busy[0] = None  # the run finished: web stays stopped, it is not wanted here
        acted = _cycles(lab, res, health, 40)
        assert _web(lab) == "shutoff" and escalated == [], acted
        assert "vm web" not in res.local_resources()
    finally:
        health.close()


def test_a_guest_whose_volumes_were_demoted_here_stays_stopped(tmp_path: Path) -> None:
    lab, res, health, escalated = _agent(tmp_path, [None])
    try:
        _cycles(lab, res, health, 3)
        lab.env.hypervisor("A").destroy("drorch-web")
        lab.env.replicators[("appdata", "a1")].demote()  # moved away (a planned migration)
        acted = _cycles(lab, res, health, 40)
        assert _web(lab) == "shutoff" and escalated == [], acted
    finally:
        health.close()


WEB_MONITOR = """    monitors:
      - name: web-alive
        type: domain           # the site's hypervisor runs the guest (the sim has no QEMU)
        target: drorch-web
        interval: 10s
        timeout: 2s
        level: 1
"""


def test_a_guest_with_a_level_1_monitor_gets_no_implicit_one(tmp_path: Path) -> None:
    _, _, health, _ = _agent(tmp_path, [None])
    try:
        web = [w.monitor.name for w in health.watched if w.resource == "vm web"]
        assert web == ["web-alive"]
    finally:
        health.close()


def test_a_guest_without_a_level_1_monitor_gets_the_implicit_one(tmp_path: Path) -> None:
    lab, res, health, _ = _agent(tmp_path, [None], {WEB_MONITOR: ""})
    try:
        assert not any(m.level == 1 for vm in lab.cluster.vms if vm.name == "web"
                       for m in vm.monitors)  # fmt: skip
        watched = [(w.resource, w.monitor.name, w.monitor.level) for w in health.watched]
        assert ("vm web", "web-domain (implicit)", 1) in watched
        # db's only monitor is level 3 (a heartbeat): it gets the implicit level 1 too
        assert ("vm db", "db-domain (implicit)", 1) in watched
        assert _cycles(lab, res, health, 3) == [] and _web(lab) == "running"
        assert crash_vm(lab.cluster, lab.env, "web", VMState.SHUTOFF) == "A"
        acted = _cycles(lab, res, health, 10)
        assert any("vm web restarted at site A" in a for a in acted), acted
        assert _web(lab) == "running"
    finally:
        health.close()


def test_a_drorch_run_holding_the_cluster_owns_its_guests(tmp_path: Path) -> None:
    """The lab's failover once failed so: the takeover runbook was starting the guest at
    B, the implicit monitor saw it shutoff meanwhile, and the agent's in-place restart
    destroyed the QEMU being started. While a run holds the run lock, nothing is
    recovered and the watchdog is not starved; once it is released, recovery resumes."""
    busy: list[str | None] = [None]
    lab, res, health, escalated = _agent(tmp_path, busy)
    try:
        _cycles(lab, res, health, 3)
        busy[0] = "run-7"
        assert crash_vm(lab.cluster, lab.env, "web", VMState.CRASHED) == "A"
        acted = _cycles(lab, res, health, 10)
        assert acted == [] and escalated == [], acted
        view = health.poll(res.local_resources())
        assert view.ok, view.reason
        assert view.monitors["web-alive"]["recovery"] == "held: drorch run run-7 holds the cluster"
        busy[0] = None
        acted = _cycles(lab, res, health, 10)
        assert any("vm web restarted at site A" in a for a in acted), acted
    finally:
        health.close()
