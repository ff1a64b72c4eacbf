"""Monitor step type: `monitor.verify` (one configured monitor passes at a site).

A monitor runs through `drorch.monitor.build.monitor_for` on the node's runner, asked
again until it passes or its timeout runs out (a heartbeat needs a few beats). In a
simulated cluster (`hypervisor.driver: sim`) nothing real listens, so the probes that
would need a guest process, a port or a serial log are answered by the simulated world
instead: a VM's monitor passes while the VM runs at that site, a service's while drorch's
record says it runs there; `command` monitors still run for real. The result says which.
"""

from __future__ import annotations

from collections.abc import Mapping

from drorch.model.states import ACTIVE_VM_STATES
from drorch.model.types import VM, Monitor, MonitorType, Service
from drorch.monitor.base import CheckResult, CheckStatus
from drorch.runbook.steps._where import PLAN_ARGS, is_sim, number, site_name, text
from drorch.runbook.steps.base import (
    Param,
    ParamKind,
    StepContext,
    StepFailed,
    StepResult,
    StepType,
    register,
)
from drorch.virt.base import Hypervisor, HypervisorError, VMState
from drorch.wait import wait_until


def resource(ctx: StepContext, name: str) -> VM | Service:
    found: list[VM | Service] = [*ctx.cluster.vms, *ctx.cluster.services]
    for res in found:
        if res.name == name:
            return res
    raise StepFailed("unknown-resource", f"no VM or service {name!r} in {ctx.cluster.name}")


def find_monitor(res: VM | Service, name: str) -> Monitor:
    for m in res.monitors:
        if m.name == name:
            return m
    known = ", ".join(m.name for m in res.monitors) or "none"
    raise StepFailed("unknown-monitor", f"{res.name} has no monitor {name!r} ({known})")


def _node(ctx: StepContext, res: VM | Service, site: str, node: str) -> str:
    if node:
        return node
    if isinstance(res, Service) and res.placement.get(site):
        return res.placement[site]
    return ctx.cluster.site(site).nodes[0].name


def _simulated(ctx: StepContext, res: VM | Service, site: str) -> CheckResult:
    if isinstance(res, VM):
        try:
            state = ctx.env.hypervisor(site).state(res.domain)
        except (KeyError, HypervisorError, OSError) as exc:
            return CheckResult(CheckStatus.FAILED, f"simulated: site {site} cannot be asked: {exc}")
        if state == VMState.RUNNING:
            return CheckResult(CheckStatus.OK, f"simulated: {res.domain} is running at {site}")
        return CheckResult(CheckStatus.FAILED, f"simulated: {res.domain} is {state} at {site}")
    from drorch.runbook.steps.service import service_record

    record = service_record(ctx, res.name)
    if record.get("state") == "running" and record.get("site") == site:
        return CheckResult(
            CheckStatus.OK, f"simulated: {res.name} runs on {record.get('node')} at {site}"
        )
    where = f"at {record.get('site')}" if record.get("site") else "nowhere"
    return CheckResult(
        CheckStatus.FAILED, f"simulated: {res.name} is {record.get('state', 'stopped')} {where}"
    )


def check_monitor(
    ctx: StepContext,
    res: VM | Service,
    spec: Monitor,
    site: str,
    node: str = "",
    timeout: float | None = None,
) -> tuple[CheckResult, str]:
    """Run `spec` until it passes or `timeout` (default: the monitor's own) runs out.
    Returns the last result and how it was checked (one line for `checked`)."""
    limit = spec.timeout if timeout is None else timeout
    left = ctx.remaining()
    if left is not None:
        limit = min(limit, left)
    if is_sim(ctx) and spec.type is not MonitorType.COMMAND:
        result = _simulated(ctx, res, site)
        return result, f"{res.name}/{spec.name} ({spec.type.value}): {result.reason}"
    from drorch.monitor.build import monitor_for

    where = _node(ctx, res, site, node)
    try:
        runner = ctx.env.runner(where)
    except KeyError:
        raise StepFailed("unknown-node", f"no runner for node {where!r}") from None
    hypervisor = ctx.env.hypervisors.get(site)
    mon = monitor_for(
        spec, runner=runner, clock=ctx.clock, base_dir=ctx.env.base_dir, hypervisor=hypervisor
    )
    last: list[CheckResult] = []
    # a VM's heartbeat: its domain's state can say that no beat will come
    domain = res.domain if isinstance(res, VM) and spec.type is MonitorType.HEARTBEAT else ""

    def passed() -> bool:
        last.append(mon.check())
        if last[-1].passed or hypervisor is None or not domain:
            return last[-1].passed
        down = _guest_down(hypervisor, domain, site)
        if down:  # no beat can come: fail now, not after the whole timeout
            last.append(CheckResult(CheckStatus.FAILED, down))
        return bool(down)

    try:
        wait_until(ctx.clock, passed, ctx.clock.monotonic() + limit, interval=0.5)
    finally:
        mon.close()
    result = last[-1]
    return result, f"{res.name}/{spec.name} ({spec.type.value} {spec.target}) on {where}: " + (
        result.reason
    )


def _guest_down(hypervisor: Hypervisor, domain: str, site: str) -> str:
    """Why `domain` at `site` cannot beat (shut off, crashed, undefined), or "" while it
    is active or its state cannot be read (then the heartbeat keeps its whole timeout)."""
    try:
        state = hypervisor.state(domain)
    except (HypervisorError, OSError):
        return ""
    if state in ACTIVE_VM_STATES:
        return ""
    return f"domain {domain} is {state} at {site}: no heartbeat can come"


@register
class MonitorVerify(StepType):
    """Confirm one monitor of a VM or service passes at the site (the plan's last steps).

    Asks it again until it passes or `timeout` runs out; fails with monitor-failed and
    the monitor's own reason. Read only, so always safe to run again."""

    name = "monitor.verify"
    params = (
        *PLAN_ARGS,
        Param("resource", ParamKind.STR, "The VM or service (default: from target).", default=""),
        Param("monitor", ParamKind.STR, "The monitor's name (default: from target).", default=""),
        Param("type", ParamKind.STR, "The monitor's type, as planned (informational).", default=""),
        Param("check", ParamKind.STR, "What it probes, as planned (informational).", default=""),
        Param("level", ParamKind.INT, "Its level, as planned (informational).", default=0),
        Param(
            "timeout",
            ParamKind.DURATION,
            "How long it has to pass (default: its own).",
            default=0.0,
        ),
    )
    idempotent = True

    def _spec(self, ctx: StepContext, args: Mapping[str, object]) -> tuple[VM | Service, Monitor]:
        res_name, _, mon_name = text(args, "target").partition("/")
        res = resource(ctx, text(args, "resource") or res_name)
        return res, find_monitor(res, text(args, "monitor") or mon_name)

    def _site(self, ctx: StepContext, args: Mapping[str, object]) -> str:
        site = text(args, "site")
        if not site:
            raise StepFailed("bad-arg", "monitor.verify needs the site to check at")
        return site_name(ctx, site)

    def describe(self, args: Mapping[str, object]) -> str:
        return f"verify monitor {text(args, 'target')} at {text(args, 'site')}"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        res, spec = self._spec(ctx, args)
        site = self._site(ctx, args)
        how = "simulated" if is_sim(ctx) and spec.type is not MonitorType.COMMAND else "run"
        return StepResult(
            False,
            f"would check {res.name}/{spec.name} at {site} ({how})",
            (
                f"monitor {res.name}/{spec.name} is configured: {spec.type.value}"
                f" {spec.target!r} level {spec.level}",
            ),
        )

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return False  # a check has no lasting effect: an interrupted one checks again

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        res, spec = self._spec(ctx, args)
        site = self._site(ctx, args)
        timeout = number(args, "timeout", 0.0) or None
        result, how = check_monitor(ctx, res, spec, site, text(args, "node"), timeout)
        if not result.passed:
            raise StepFailed("monitor-failed", how, data={"monitor": f"{res.name}/{spec.name}"})
        return StepResult(
            False,
            how,
            (how,),
            data={
                "monitor": f"{res.name}/{spec.name}",
                "site": site,
                "verified": True,
                "verified_at": ctx.clock.now(),
            },
        )
