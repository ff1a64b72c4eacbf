"""The agent's monitors, built from the cluster file: every `monitors:` entry of the
node's VMs and services (on the simulator, the simulated stand-ins), plus an implicit
level-1 domain check for each guest without a level-1 monitor of its own, as Pacemaker's
VirtualDomain always monitors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from drorch.agent.bounded import Bounded
from drorch.agent.health import LocalHealth, Watched
from drorch.agent.jobs import Job
from drorch.agent.resources import EnvResources, resource_groups
from drorch.clock import Clock
from drorch.decide.recovery import RecoveryPolicy
from drorch.environment import Environment
from drorch.model.types import VM, Cluster, MonitorType
from drorch.monitor.base import Monitor
from drorch.monitor.build import monitor_for
from drorch.monitor.domain import DomainMonitor, SimulatedMonitor
from drorch.remote.local import LocalRunner

IMPLICIT_DOMAIN_MONITOR = "{vm}-domain (implicit)"
"""The name of the level-1 check every guest without one of its own gets: the domain runs
(or is paused) here."""


def build_health(
    cluster: Cluster,
    node: str,
    env: Environment,
    resources: EnvResources,
    base: Path,
    clock: Clock,
    escalate: Callable[[tuple[str, ...], str], Job],
    bounded: Bounded | None = None,
) -> LocalHealth:
    watched = []
    runner = env.runners.get(node) or LocalRunner(clock=clock, cwd=base)
    hypervisor = env.hypervisors.get(cluster.node(node)[0].name)
    simulated = cluster.hypervisor.driver == "sim"
    for kind, items in (("vm", cluster.vms), ("service", cluster.services)):
        for item in items:
            for spec in item.monitors:
                m: Monitor
                if simulated and spec.type not in (MonitorType.COMMAND, MonitorType.DOMAIN):
                    domain = item.domain if isinstance(item, VM) else None
                    m = SimulatedMonitor(spec.name, spec.level, domain, hypervisor)
                else:
                    m = monitor_for(
                        spec, runner=runner, clock=clock, base_dir=base, hypervisor=hypervisor
                    )
                watched.append(Watched(f"{kind} {item.name}", m, spec.interval))
    for vm in cluster.vms:
        if not any(spec.level == 1 for spec in vm.monitors):
            # as Pacemaker's VirtualDomain always monitors: is the domain running here
            name = IMPLICIT_DOMAIN_MONITOR.format(vm=vm.name)
            implicit = DomainMonitor(name, vm.domain, hypervisor)
            watched.append(Watched(f"vm {vm.name}", implicit, cluster.agent.heartbeat))
    groups = resource_groups(cluster)
    a = cluster.agent
    return LocalHealth(
        watched,
        clock=clock,
        policy=RecoveryPolicy(a.max_restarts, a.failure_window),
        groups=lambda r: groups.get(r, (r,)),
        restart=resources.restart,
        escalate=escalate,
        bounded=bounded,
        busy=resources.run_busy,
    )
