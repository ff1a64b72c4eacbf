"""`drorch lab torture`: the nemesis, run against the whole lab (one guest, sync).

Each run starts from a healthy lab, plays one schedule (drorch.lab.torture_plan) through
the lab's own fault injection (every fault lands in the event log), then heals every
partition, thaws frozen agents, restores disk speed and brings back whatever was
killed (LabStack.restore: daemons only, never the guest), and waits, bounded, until
the lab is healthy again. While it runs, a sampler thread asks both replicas their role
and looks for the guest's QEMU at both sites twice a second. At the end the run's
logs are judged (drorch.lab.torture_judge): the agents' role logs, the samples, the
guest's serial log (acknowledged counter values lost).

Healthy: the guest's QEMU alive at exactly one site and heartbeating; its replica
primary there, the other secondary, both UpToDate and Connected; both agents running.
A run that does not get back to healthy within the bound is reported as such, and the
lab is rebuilt from scratch (`down`, `up`) before the next run.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drorch.lab.cluster_config import guest_serial_log
from drorch.lab.cluster_full import NODES, LabSpec
from drorch.lab.counter import audit_serial, size
from drorch.lab.faults import FaultError
from drorch.lab.guest import last_heartbeat
from drorch.lab.processes import live_pid
from drorch.lab.stack import LabStack, StackError
from drorch.lab.torture_diagnose import agent_decisions
from drorch.lab.torture_evidence import disk_counters, role_records, site_stops
from drorch.lab.torture_judge import Sample, Verdict, disk_lost, judge
from drorch.lab.torture_plan import Fault, Schedule
from drorch.replication.pyrepl.control_path import replica_control_path

VM = "vm1"
VOLUME = f"{VM}-disk"


@dataclass
class Injected:
    fault: Fault
    at: float  # wall clock when it was injected
    ok: bool
    detail: str


@dataclass
class RunResult:
    schedule: Schedule
    injected: list[Injected] = field(default_factory=list)
    verdict: Verdict | None = None
    unhealthy: str = ""  # why the lab was not healthy in the end (empty: it was)
    where: str = ""  # where the guest ran once recovered
    disks: dict[str, int | None] = field(default_factory=dict)  # counter on each replica
    stuck: list[str] = field(default_factory=list)  # not recovered: what each agent decided

    def row(self) -> dict[str, Any]:
        v = self.verdict
        return {
            "run": self.schedule.run,
            "faults": "; ".join(
                f"+{i.fault.at:g}s {i.fault.kind} {i.fault.target}{'' if i.ok else ' (failed)'}"
                for i in self.injected
            ),
            "split_brains": len(v.split_brains) if v else None,
            "acked_lost": v.acked_lost if v else None,
            "recovered": v.recovered if v else False,
            "recovery_s": v.recovery_s if v else None,
            "fault_to_healthy_s": v.fault_to_healthy_s if v else None,
            "guest_at": self.where or "-",
            "verdict": "ok" if v and v.safe and v.recovered else self._bad(),
        }

    def _bad(self) -> str:
        v = self.verdict
        if v is None:
            return "not judged"
        if v.split_brains:
            return "SPLIT BRAIN"
        if not v.safe:
            return "ACKED LOSS"
        return "not recovered"

    def as_dict(self) -> dict[str, Any]:
        v = self.verdict
        return self.row() | {
            "seed": self.schedule.seed,
            "schedule": self.schedule.describe(),
            "injected": [
                {
                    "kind": i.fault.kind,
                    "target": i.fault.target,
                    "planned_s": i.fault.at,
                    "time": i.at,
                    "ok": i.ok,
                    "detail": i.detail,
                }
                for i in self.injected
            ],
            "split_brain_findings": [f.as_dict() for f in v.split_brains] if v else [],
            "unhealthy": self.unhealthy,
            "disk_counters": self.disks,
            "notes": list(v.notes) if v else [],
            "stuck": self.stuck,
        }


class LabTorture:
    def __init__(
        self,
        stack: LabStack,
        say: Callable[[str], None],
        *,
        mode: str = "sync",
        recovery_bound: float = 150.0,
    ) -> None:
        self.stack = stack
        self.layout = stack.layout
        self.files = stack.files
        self.faults = stack.lab.faults
        self.say = say
        self.spec = LabSpec(vms=1, mode=mode)
        self.bound = recovery_bound
        self.serial = Path(guest_serial_log(self.layout, VM))
        self.sites = list(self.layout.site_names)  # siteA, siteB
        self._samples: list[Sample] = []
        self._sampling = threading.Event()
        self.aborted = ""

    # ------------------------------------------------------------------ observing
    def _qemu_sites(self) -> tuple[str, ...]:
        run = self.layout.run_dir
        return tuple(s for s in self.sites if live_pid(run(s) / "qemu" / f"{VM}.pid", "qemu"))

    def _replica(self, site: str) -> dict[str, Any] | None:
        from drorch.replication.pyrepl.control import ControlClient, ControlUnreachable

        ctl = replica_control_path(self.files.root, VOLUME, NODES[site])
        try:
            return dict(ControlClient(ctl, timeout=1.0).call("status"))
        except (ControlUnreachable, OSError, ValueError, TypeError):
            return None

    def _sample(self) -> Sample:
        roles = {s: self._replica(s) for s in self.sites}
        prim = tuple(s for s, st in roles.items() if st and st.get("role") == "primary")
        return Sample(time.time(), self._qemu_sites(), prim)

    def _sampler(self) -> None:
        while self._sampling.is_set():
            with contextlib.suppress(Exception):  # a probe that fails is no sample
                self._samples.append(self._sample())
            time.sleep(0.5)

    def healthy(self) -> tuple[bool, str]:
        """(healthy, why not / where the guest runs)."""
        where = self._qemu_sites()
        if len(where) != 1:
            return False, f"guest QEMU at {list(where) or 'no site'}"
        for site in self.sites:
            pid = live_pid(self.faults.agent_pid_file(site), "agent run")
            if pid is None or _stopped(pid):
                return False, f"{site}'s agent is not running"
            busy = self._agent_busy(site)
            if busy:
                return False, busy
        reps = {s: self._replica(s) for s in self.sites}
        for site, st in reps.items():
            if st is None:
                return False, f"{site}'s replica does not answer"
            want = "primary" if site == where[0] else "secondary"
            if st.get("role") != want:
                return False, f"{site}'s replica is {st.get('role')}, not {want}"
            if st.get("disk") != "UpToDate" or st.get("connection") != "Connected":
                return False, f"{site}'s replica is {st.get('disk')}/{st.get('connection')}"
        return True, where[0]

    def _agent_busy(self, site: str) -> str:
        """Why the site's agent is not settled yet (a site-failover run still going,
        which locks the cluster), or empty."""
        from drorch.agent.control import ask

        socks = sorted(self.files.drorch_state.glob(f"agent-*-{NODES[site]}.sock"))
        if not socks:
            return f"{site}'s agent has no control socket"
        try:
            status = ask(socks[0], {"op": "status"}, timeout=3.0)
        except (OSError, ValueError) as exc:
            return f"{site}'s agent does not answer: {exc}"
        job = (status.get("jobs") or {}).get("takeover") or {}
        return f"{site}'s agent still runs its site-failover" if job.get("running") else ""

    def _wait_healthy(self, bound: float) -> tuple[float | None, str]:
        """Until healthy and a new heartbeat after that; (wall time, where/why)."""
        deadline = time.monotonic() + bound
        why = ""
        while time.monotonic() < deadline:
            ok, why = self.healthy()
            if ok:
                at = time.time()
                beat = last_heartbeat(self.serial) or 0
                while time.monotonic() < deadline:
                    if (last_heartbeat(self.serial) or 0) > beat:
                        return at, why
                    time.sleep(0.3)
                return None, f"{why}: no new heartbeat"
            time.sleep(1.0)
        return None, why

    # ------------------------------------------------------------------ acting
    def _inject(self, fault: Fault) -> Injected:
        f = self.faults
        at = time.time()
        try:
            if fault.kind == "partition":
                event = f.partition(fault.target)
            elif fault.kind in ("kill-site", "kill-witness"):
                event = f.kill_place(fault.target)
            elif fault.kind == "freeze-agent":
                event = f.freeze_agent(fault.target)
            elif fault.kind == "slow-disk":
                event = f.slow_disk(fault.target)
            else:
                raise FaultError(f"unknown fault {fault.kind}")
        except (FaultError, OSError) as exc:
            return Injected(fault, at, False, str(exc))
        return Injected(fault, event.time, True, event.detail)

    def restore(self) -> list[str]:
        """Heal, thaw, restore disk speed, bring back what was killed."""
        problems = []
        try:
            self.faults.heal(None)
        except (FaultError, OSError) as exc:
            problems.append(f"heal: {exc}")
        for site in ("A", "B"):
            pid = live_pid(self.faults.agent_pid_file(site), "agent run")
            if pid is not None and _stopped(pid):  # a killed one: restore brings it back
                self.faults.freeze_agent(site, thaw=True)
            self.faults.fast_disk(site, record=False)
        try:
            self.stack.restore()
        except (StackError, OSError, TimeoutError) as exc:
            problems.append(f"restore: {exc}")
        self.faults.events.record("restore", "all", "; ".join(problems) or "daemons back")
        return problems

    def ensure_healthy(self) -> None:
        """A healthy lab for the next run: built when there is none; one that is not
        healthy within 20 s is rebuilt from scratch (`down`, `up`: day 0 again), not
        patched up: the lab must not decide where the guest runs after a fault."""
        if not self.files.cluster.exists():
            self.stack.up(self.spec)
        at, why = self._wait_healthy(20 if self.files.cluster.exists() else 90)
        if at is not None:
            return
        self.say(f"lab not healthy ({why}): rebuilding it (lab down, lab up)")
        self.faults.events.record("torture", "lab", f"rebuilt: {why}")
        self.stack.down()
        self.stack.up(self.spec)
        at, why = self._wait_healthy(90)
        if at is None:
            raise StackError(f"the lab is not healthy after a rebuild: {why}")

    # ------------------------------------------------------------------ one run
    def run_one(self, schedule: Schedule) -> RunResult:
        result = RunResult(schedule)
        self.say(f"== run {schedule.run}: {schedule.describe()}")
        serial_at = size(self.serial)
        start = time.time()
        t0 = time.monotonic()
        self.faults.events.record("torture", f"run {schedule.run}", schedule.describe())
        self._samples = []
        self._sampling.set()
        sampler = threading.Thread(target=self._sampler, name="torture-sampler", daemon=True)
        sampler.start()
        try:
            for fault in schedule.faults:
                _sleep_until(t0 + fault.at)
                done = self._inject(fault)
                result.injected.append(done)
                self.say(f"   {fault.describe()}: {'ok' if done.ok else 'FAILED'} {done.detail}")
            _sleep_until(t0 + schedule.heal_at)
            heal = time.time()
            problems = self.restore()
            for p in problems:
                self.say(f"   restore: {p}")
            recovered_at, why = self._wait_healthy(self.bound)
        finally:
            self._sampling.clear()
            sampler.join(5)
        end = time.time()
        result.where = why if recovered_at is not None else ""
        result.unhealthy = "" if recovered_at is not None else why
        if recovered_at is None:
            result.stuck = [f"not healthy: {why}", *agent_decisions(self.files, self.sites)]
            for line in result.stuck:
                self.say(f"   {line}")
        first = next((i.at for i in result.injected if i.ok), None)
        audit = audit_serial(self.serial, serial_at)
        result.disks = disk_counters(self.files, VM)
        on_disk = disk_lost(audit.last_acked, result.disks)
        result.verdict = judge(
            roles=role_records(self.files),
            stops=site_stops(self.files, self.faults.events.read(), self.sites, start, end),
            samples=list(self._samples),
            acked_lost=max(audit.acked_lost, on_disk),
            start=start,
            first_fault=first,
            heal=heal,
            recovered_at=recovered_at,
            end=end,
            mode=self.spec.mode,
            notes=problems,
        )
        self.say(f"   {result.row()}")
        return result

    def run(self, schedules: list[Schedule]) -> list[RunResult]:
        """Every schedule in turn; when the lab cannot be made healthy for the next one
        (`aborted` says why) the runs done so far are returned."""
        results = []
        for schedule in schedules:
            try:
                self.ensure_healthy()
            except (StackError, OSError, TimeoutError) as exc:
                self.aborted = f"before run {schedule.run}: {exc}"
                self.say(f"stopped: {self.aborted}")
                break
            results.append(self.run_one(schedule))
            self._keep(results[-1])
        return results

    def _keep(self, result: RunResult) -> None:
        """Each run's record as it is judged (`labs/<name>/torture.jsonl`): a torture
        stopped half-way keeps the runs it finished."""
        line = json.dumps(result.as_dict(), default=str) + "\n"
        with open(self.files.root / "torture.jsonl", "a", encoding="utf-8") as f:
            f.write(line)


def _sleep_until(deadline: float) -> None:
    left = deadline - time.monotonic()
    if left > 0:
        time.sleep(left)


def _stopped(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return True
    return state in ("T", "t", "Z")
