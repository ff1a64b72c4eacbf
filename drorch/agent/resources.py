"""What runs on this node, and how it stops writing: through the Environment's
replicators (volumes with a replica here) and this site's hypervisor (its guests)."""

from __future__ import annotations

import logging

from drorch.decide.agent import SelfFenceDecision
from drorch.environment import Environment
from drorch.model.types import Cluster, SelfFence

log = logging.getLogger("drorch.agent")
RUNNING = ("running", "paused")


class EnvResources:
    def __init__(self, cluster: Cluster, node: str, env: Environment) -> None:
        self.cluster, self.node, self.env = cluster, node, env
        self.site = cluster.node(node)[0].name
        self.volumes = [v for v in cluster.volumes if node in v.paths]
        self.problems: list[str] = []

    def primary_here(self) -> tuple[str, ...]:
        self.problems = []
        found: list[str] = []
        for v in self.volumes:
            rep = self.env.replicators.get((v.name, self.node))
            if rep is None:
                continue
            try:
                if rep.status().role.value == "primary":
                    found.append(f"volume {v.name}")
            except Exception as exc:  # an unanswering replicator is a problem, not a crash
                self.problems.append(f"volume {v.name}: {exc}")
                found.append(f"volume {v.name} (unknown)")  # assume it may still write
        hyp = self.env.hypervisors.get(self.site)
        if hyp is not None:
            for vm in self.cluster.vms:
                try:
                    if hyp.state(vm.domain).value in RUNNING:
                        found.append(f"vm {vm.name}")
                except Exception as exc:
                    self.problems.append(f"vm {vm.name}: {exc}")
        return tuple(found)

    def self_fence(self, decision: SelfFenceDecision) -> list[str]:
        """Guests first (they write), then the volumes. Each failure is logged and the
        rest still runs; the watchdog fences whatever hangs."""
        done: list[str] = []
        hyp = self.env.hypervisors.get(self.site)
        graceful = decision.mode is SelfFence.SHUTDOWN
        if hyp is not None:
            for vm in self.cluster.vms:
                try:
                    if hyp.state(vm.domain).value not in RUNNING:
                        continue
                    if graceful:
                        hyp.shutdown(vm.domain, self.cluster.fencing.watchdog_timeout / 2)
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
