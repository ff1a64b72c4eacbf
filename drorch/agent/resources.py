"""What runs on this node, and how it stops writing: through the Environment's
replicators (volumes with a replica here) and this site's hypervisor (its guests)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from drorch.agent.bounded import Bounded, Unobserved
from drorch.agent.rejoin import daemon_absent
from drorch.decide.agent import SelfFenceDecision
from drorch.environment import Environment
from drorch.fencing.guest_kill import kill_guest
from drorch.model.states import ConnState, Role
from drorch.model.types import Cluster, SelfFence
from drorch.replication.base import ReplicationStatus

log = logging.getLogger("drorch.agent")
RUNNING = ("running", "paused")


def peer_cannot_write(st: ReplicationStatus) -> str | None:
    """Why, while connected, only one copy of this volume takes writes in a single order,
    or None. A primary beside a connected secondary: the peer's copy refuses writes
    (promoting it beside a primary is refused). Two primaries of a planned hand-over:
    the second forwards every write to the first, which orders them (pyrepl dual.py).
    A secondary beside a connected primary: writes here go to the peer. Once the link
    drops none of this holds, and the agent judges this node by quorum alone."""
    if st.connection not in (ConnState.CONNECTED, ConnState.SYNC_SOURCE, ConnState.SYNC_TARGET):
        return None
    dual = st.extra.get("two_primaries")
    state = dual.get("state") if isinstance(dual, dict) else None
    if st.role is Role.PRIMARY and state in ("first-primary", "second-primary"):
        return f"{state} of a connected live hand-over (one write order)"
    if st.role is Role.PRIMARY and st.peer_role is Role.SECONDARY:
        return "primary beside a connected secondary (the peer's copy refuses writes)"
    if st.role is Role.SECONDARY and st.peer_role is Role.PRIMARY:
        return "secondary beside a connected primary"
    return None


class EnvResources:
    """`bounded`: the loop's observation budget (drorch.agent.bounded); a replica or guest
    whose call is past it is *unobserved* this cycle and judged by its last answer: a
    replica last seen primary (or never seen) still counts as primary, and is listed in
    `unobserved` (what it is -> seconds without an answer) for the loop's health rule.
    `run_busy()`: the drorch run holding the cluster's run lock, if any (a run stops
    guests on purpose)."""

    def __init__(
        self,
        cluster: Cluster,
        node: str,
        env: Environment,
        bounded: Bounded | None = None,
        run_busy: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.cluster, self.node, self.env = cluster, node, env
        self.site = cluster.node(node)[0].name
        self.volumes = [v for v in cluster.volumes if node in v.paths]
        self.problems: list[str] = []
        self.bounded = bounded or Bounded(None)
        self.run_busy = run_busy
        self.last_role: dict[str, str] = {}  # volume -> its role at the last answer
        self.last_vm: dict[str, str] = {}  # guest -> its state at the last answer
        self.unobserved: dict[str, float] = {}
        self.should_run: set[str] = set()  # guests seen running here, not stopped by drorch

    def _vm_state(self, name: str, domain: str) -> str:
        """The guest's state here; its last answer when this cycle's call is unobserved
        (recorded in `unobserved` when that was running). Raises when never answered."""
        hyp = self.env.hypervisors[self.site]
        key = f"hypervisor {name}"
        try:
            state = self.bounded.call(key, lambda: hyp.state(domain).value)
        except Unobserved:
            state = self.last_vm.get(name, "")
            if state in (*RUNNING, "crashed", ""):
                self.unobserved[f"vm {name}"] = self.bounded.hung_for(key) or 0.0
            if not state:
                raise
            return state
        self.last_vm[name] = state
        return state

    def primary_here(self) -> tuple[str, ...]:
        """What may write here. Also fills `self.handover`: the entries that write only
        while the peer cannot (see `peer_cannot_write`), each with why."""
        self.problems = []
        self.unobserved = {}
        self.handover: dict[str, str] = {}
        found: list[str] = []
        quiet: dict[str, str] = {}  # volume -> why the peer cannot write it meanwhile
        for v in self.volumes:
            rep = self.env.replicators.get((v.name, self.node))
            if rep is None:
                continue
            key = f"replicator {v.name}"
            try:
                st = self.bounded.call(key, rep.status)
            except Unobserved as exc:  # hung: judged by its last answer, never as healthy
                self.problems.append(f"volume {v.name}: {exc}")
                if self.last_role.get(v.name, "primary") == "primary":
                    found.append(f"volume {v.name} (unobserved)")  # it may still write
                    self.unobserved[f"volume {v.name}"] = self.bounded.hung_for(key) or 0.0
                continue
            except Exception as exc:  # an unanswering replicator is a problem, not a crash
                self.problems.append(f"volume {v.name}: {exc}")
                if daemon_absent(exc):
                    continue  # no replicator runs: nothing writes through it here
                found.append(f"volume {v.name} (unknown)")  # assume it may still write
                continue
            self.last_role[v.name] = st.role.value
            why = peer_cannot_write(st)
            if why is not None:
                quiet[v.name] = why
            if st.role.value == "primary":
                found.append(f"volume {v.name}")
                if why is not None:
                    self.handover[f"volume {v.name}"] = f"{v.name}: {why}"
        if self.site in self.env.hypervisors:
            for vm in self.cluster.vms:
                try:
                    if self._vm_state(vm.name, vm.domain) in RUNNING:
                        found.append(f"vm {vm.name}")
                        if vm.volumes and all(n in quiet for n in vm.volumes):
                            self.handover[f"vm {vm.name}"] = f"{vm.name} writes only to them"
                except Exception as exc:
                    self.problems.append(f"vm {vm.name}: {exc}")
        return tuple(found)

    def local_resources(self) -> frozenset[str]:
        """The guests running (or crashed: libvirt's `crashed`, kept for recovery) at this
        site's hypervisor, and the services placed on this node while anything runs here
        (services have no state of their own to ask). A guest that died to `shutoff`
        (libvirt's default on_crash, or a guest OS that powered off) is here too while it
        should run (`_died`): then its monitors judge it, so it is restarted in place
        under its restart budget and escalated past it, like a crashed one."""
        here: set[str] = set()
        if self.site in self.env.hypervisors:
            for vm in self.cluster.vms:
                try:
                    state = self._vm_state(vm.name, vm.domain)
                except Exception as exc:  # an unanswering hypervisor judges nothing
                    log.debug("vm %s: %s", vm.name, exc)
                    continue
                if state in RUNNING:
                    self.should_run.add(vm.name)
                if state in (*RUNNING, "crashed") or self._died(vm.name, state):
                    here.add(f"vm {vm.name}")
        if here:
            first = self.cluster.site(self.site).nodes[0].name
            for svc in self.cluster.services:
                if svc.placement.get(self.site, first) == self.node:
                    here.add(f"service {svc.name}")
        return frozenset(here)

    def _died(self, name: str, state: str) -> bool:
        """A guest that should run here and is `shutoff`: this agent saw it run here, no
        drorch run holds the cluster (a runbook stops guests on purpose, under the run
        lock), this agent did not fence it, and every local replica of its volumes was
        primary at the last answer (this is still the site that runs it). Anything else
        and it was stopped on purpose: it is forgotten until it runs here again."""
        if state != "shutoff" or name not in self.should_run:
            return False
        vm = next(v for v in self.cluster.vms if v.name == name)
        mine = [v.name for v in self.volumes if v.name in vm.volumes]
        busy = self.run_busy()
        why = None
        if busy is not None:
            why = f"drorch run {busy or '?'} holds the cluster"
        elif any(self.last_role.get(v) != "primary" for v in mine):
            why = "its volumes are not primary here"
        if why is None:
            return True
        self.should_run.discard(name)
        log.info("vm %s is shutoff and stays so: %s", name, why)
        return False

    def restart(self, resource: str, limit: float) -> str:
        """Restart in place: a guest is destroyed and started again at this site; a
        service is stopped and started by its commands on this node, each within `limit`
        seconds (the restart budget). Called on its own thread (drorch.agent.health)."""
        kind, _, name = resource.partition(" ")
        if kind == "vm":
            vm = next(v for v in self.cluster.vms if v.name == name)
            hyp = self.env.hypervisor(self.site)
            if hyp.state(vm.domain).value != "shutoff":  # a guest that died to shutoff
                hyp.destroy(vm.domain)
            hyp.start(vm.domain)
            return f"vm {name} restarted at site {self.site}"
        svc = next(s for s in self.cluster.services if s.name == name)
        runner = self.env.runner(self.node)
        runner.run(["sh", "-c", svc.stop], timeout=limit)
        done = runner.run(["sh", "-c", svc.start], timeout=limit)
        if done.returncode != 0:
            raise RuntimeError(f"{svc.start!r} exited {done.returncode}")
        return f"service {name} restarted on {self.node}"

    def self_fence(self, decision: SelfFenceDecision) -> list[str]:
        """Guests first (they write), then the volumes. Each failure is logged and the
        rest still runs; the watchdog fences whatever hangs."""
        done: list[str] = []
        self.should_run.clear()  # stopped by drorch: none of them should run here now
        hyp = self.env.hypervisors.get(self.site)
        graceful = decision.mode is SelfFence.SHUTDOWN
        if hyp is not None:
            for vm in self.cluster.vms:
                try:
                    if hyp.state(vm.domain).value not in RUNNING:
                        continue
                    if graceful:
                        hyp.shutdown(vm.domain, self.cluster.fencing.watchdog_timeout / 2)
                    elif self.cluster.hypervisor.driver == "libvirt":
                        # SIGKILL first: libvirt's destroy waits 10 s on a SIGTERM that a
                        # QEMU stuck on a frozen disk cannot honour (drorch.fencing.guest_kill)
                        for pid in kill_guest(vm.domain):
                            log.warning("fencing vm %s: SIGKILL to QEMU pid %d", vm.name, pid)
                    hyp.destroy(vm.domain)
                    done.append(f"vm {vm.name} {'shut down' if graceful else 'destroyed'}")
                except Exception as exc:
                    log.error("self-fence: vm %s: %s", vm.name, exc)
                    done.append(f"vm {vm.name}: FAILED to stop: {exc}")
        for v in self.volumes:
            rep = self.env.replicators.get((v.name, self.node))
            if rep is None:
                continue
            try:
                rep.demote()
                done.append(f"volume {v.name} demoted")
            except Exception as exc:
                log.error("self-fence: volume %s: %s", v.name, exc)
                done.append(f"volume {v.name}: FAILED to demote: {exc}")
        return done


def resource_groups(cluster: Cluster) -> dict[str, tuple[str, ...]]:
    """Each VM/service -> its group: everything connected to it through depends_on
    (what must move together). Names as `vm db` / `service proxy`."""
    kind = {vm.name: "vm" for vm in cluster.vms} | {s.name: "service" for s in cluster.services}
    edges: dict[str, set[str]] = {n: set() for n in kind}
    deps = [(vm.name, vm.depends_on) for vm in cluster.vms]
    deps += [(s.name, s.depends_on) for s in cluster.services]
    for name, depends_on in deps:
        for d in depends_on:
            if d in edges:
                edges[name].add(d)
                edges[d].add(name)
    out: dict[str, tuple[str, ...]] = {}
    for start in kind:
        seen, todo = {start}, [start]
        while todo:
            for n in edges[todo.pop()] - seen:
                seen.add(n)
                todo.append(n)
        out[f"{kind[start]} {start}"] = tuple(sorted(f"{kind[n]} {n}" for n in seen))
    return out
