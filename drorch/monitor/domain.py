"""Level 1 for guests: the hypervisor says the domain runs here, or is paused (Pacemaker's
VirtualDomain monitor asks `virsh domstate` the same way, and counts paused as running).

It works with every `Hypervisor` driver, so a simulated guest (no QEMU process to find)
is judged as truly as a libvirt one. A hypervisor that cannot be asked is a failure with
its reason, never an exception."""

from __future__ import annotations

from drorch.monitor.base import CheckResult, CheckStatus, Monitor
from drorch.virt.base import Hypervisor


class DomainMonitor(Monitor):
    def __init__(
        self, name: str, domain: str, hypervisor: Hypervisor | None, *, timeout: float = 5.0
    ) -> None:
        super().__init__(name, 1, timeout)
        self.domain = domain
        self.hypervisor = hypervisor

    def check(self) -> CheckResult:
        if self.hypervisor is None:
            return CheckResult(CheckStatus.FAILED, f"no hypervisor here to ask for {self.domain}")
        try:
            state = self.hypervisor.state(self.domain).value
        except Exception as exc:  # an unanswering hypervisor is a failed check
            return CheckResult(
                CheckStatus.FAILED, f"domain {self.domain}: {type(exc).__name__}: {exc}"
            )
        if state == "running":
            return CheckResult(CheckStatus.OK, f"domain {self.domain} is running")
        if state == "paused":
            # as Pacemaker's VirtualDomain: its QEMU is alive (a live migration pauses the
            # incoming copy, and the outgoing one for its last round); it is not writing
            return CheckResult(CheckStatus.OK, f"domain {self.domain} is paused (QEMU alive)")
        return CheckResult(CheckStatus.FAILED, f"domain {self.domain} is {state}")


class SimulatedMonitor(Monitor):
    """On the simulator (`hypervisor.driver: sim`) nothing listens, beats or runs as a
    process: a guest's check asks the simulated hypervisor (the domain runs here), and a
    service's passes while it is placed here (the agent judges only local resources).
    `check.monitors` judges them the same way. Command monitors still run for real."""

    def __init__(
        self, name: str, level: int, domain: str | None, hypervisor: Hypervisor | None
    ) -> None:
        super().__init__(name, level, timeout=0.0)
        self.inner = DomainMonitor(name, domain, hypervisor) if domain is not None else None

    def check(self) -> CheckResult:
        if self.inner is None:
            return CheckResult(CheckStatus.OK, "simulated: the service is placed here")
        r = self.inner.check()
        return CheckResult(r.status, f"simulated: {r.reason}")
