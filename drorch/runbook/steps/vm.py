"""VM step types: `vm.migrate_live`, `vm.shutdown`, `vm.define`, `vm.start`,
`vm.cold_failover`, `vm.verify_alive`.

They act through `drorch.virt.cluster_vms.ClusterVMs` (the code path of `drorch vm`:
the same cross-site refusals and the same migration options from the cluster's policy)
on the Environment's hypervisors. After a VM moves or starts, the step confirms that the
guest is alive at the target (`vm.verify_alive`): one lab migration in about fourteen
reported success while the guest's kernel had panicked at the destination.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from drorch.model.types import VM
from drorch.runbook.steps import _vmops
from drorch.runbook.steps._where import (
    PLAN_ARGS,
    cluster_vms,
    number,
    site_name,
    text,
    vm,
)
from drorch.runbook.steps.base import (
    Param,
    ParamKind,
    StepContext,
    StepFailed,
    StepResult,
    StepType,
    register,
)
from drorch.virt.base import HypervisorError, VMState
from drorch.virt.cluster_vms import VMOperationRefused

DOMAIN = Param("domain", ParamKind.STR, "The libvirt domain (default: the model's).", default="")
VERIFY_WAIT = 30.0
# refusals a dry run only notes: in a plan, earlier steps stop the VM there / promote
EARLIER = ("vm-running-elsewhere", "volume-not-primary")


STOPPED = "vm_stopped_at"  # facts: VM name -> when vm.shutdown stopped it (downtime)


def _stopped(ctx: StepContext) -> Mapping[str, object]:
    value = ctx.facts.get(STOPPED)
    return value if isinstance(value, dict) else {}


def _vm_site(ctx: StepContext, args: Mapping[str, object]) -> tuple[VM, str]:
    model = vm(ctx, text(args, "target"))
    site = text(args, "site")
    if not site:
        raise StepFailed("bad-arg", f"{model.name}: give the site to act at")
    return model, site_name(ctx, site)


def _state(ctx: StepContext, model: VM, site: str) -> VMState | str:
    return _vmops.states(ctx, model).get(site, "unknown")


class _VMStep(StepType):
    verb = ""

    def describe(self, args: Mapping[str, object]) -> str:
        return f"{self.verb} {text(args, 'target')} at {text(args, 'site')}"


@register
class VerifyAlive(_VMStep):
    """The guest is alive at the site: running there (and nowhere else), and each of its
    heartbeat monitors passes within `timeout` (simulated VMs: the hypervisor's state).

    Fails with vm-not-alive (crashed, shut off, or running but not heartbeating)."""

    name = "vm.verify_alive"
    params = (
        *PLAN_ARGS,
        Param("timeout", ParamKind.DURATION, "How long the heartbeat has.", default=VERIFY_WAIT),
    )
    idempotent = True
    verb = "verify alive"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        model, site = _vm_site(ctx, args)
        seen = f"{model.domain} at {site}: {_state(ctx, model, site)}"
        return StepResult(False, f"would confirm {model.name} is alive at {site}", (seen,))

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return False  # a check: asked again after an interruption

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        model, site = _vm_site(ctx, args)
        checked = _vmops.verify_alive(ctx, model, site, number(args, "timeout", VERIFY_WAIT))
        return StepResult(
            False,
            f"{model.name} is alive at {site}",
            tuple(checked),
            data={"vm": model.name, "site": site, "verified": True, "verified_at": ctx.clock.now()},
        )


@register
class Shutdown(_VMStep):
    """Shut the VM down at the site (graceful, destroyed after `timeout`).

    Undo: vm.start."""

    name = "vm.shutdown"
    params = (
        *PLAN_ARGS,
        DOMAIN,
        Param("before", ParamKind.STR_LIST, "Dependents stopped before it.", default=()),
        Param("timeout", ParamKind.DURATION, "Destroy it after this long.", default=60.0),
    )
    undo = "vm.start"
    undo_restores = True
    verb = "shut down"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        model, site = _vm_site(ctx, args)
        state = _state(ctx, model, site)
        seen = (f"{model.domain} at {site}: {state}",)
        if state not in _vmops.ACTIVE:
            return StepResult(False, f"{model.name} is not running at {site}", seen)
        return StepResult(True, f"would shut {model.name} down at {site}", seen)

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        model, site = _vm_site(ctx, args)
        return _state(ctx, model, site) not in _vmops.ACTIVE

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        model, site = _vm_site(ctx, args)
        if self.probe(ctx, args):
            return StepResult(False, f"{model.name} is not running at {site}")
        start = ctx.clock.monotonic()
        try:
            result = cluster_vms(ctx).shutdown(model.name, site, number(args, "timeout", 60.0))
        except HypervisorError as exc:
            raise StepFailed("shutdown-failed", f"{model.name} at {site}: {exc}") from exc
        how = "shut down" if result.graceful else "destroyed after the timeout"
        stopped = dict(_stopped(ctx))
        stopped[model.name] = ctx.clock.now()
        ctx.facts[STOPPED] = stopped  # a new dict: the engine journals changed facts
        return StepResult(
            True,
            f"{model.name} {how} at {site}",
            data={
                "vm": model.name,
                "site": site,
                "graceful": result.graceful,
                "stopped_at": ctx.clock.now(),
                "took_s": ctx.clock.monotonic() - start,
            },
        )


@register
class Define(_VMStep):
    """Define the VM at the site from its domain XML, mapped for the site: the copy saved
    for it, else the model's `xml:`, else another site's definition (`drorch vm
    failover-start`'s choice); an `xml_path` other than the model's is used as given.

    No undo (the definition is harmless while the VM is off)."""

    name = "vm.define"
    params = (
        *PLAN_ARGS,
        DOMAIN,
        Param(
            "xml_source",
            ParamKind.STR,
            "file or saved.",
            default="saved",
            choices=("file", "saved"),
        ),
        Param("xml_path", ParamKind.STR, "The domain XML file.", default=""),
        Param("from_site", ParamKind.STR, "Whose definition, as planned.", default=""),
    )
    verb = "define"

    def _xml(
        self, ctx: StepContext, model: VM, site: str, args: Mapping[str, object]
    ) -> tuple[str, str]:
        vms = cluster_vms(ctx)
        given = text(args, "xml_path")
        try:
            if text(args, "xml_source") == "file" and given and given != (model.xml or ""):
                path = Path(given)
                return vms.saved_xml(
                    model.name, site, path if path.is_absolute() else ctx.env.base_dir / path
                )
            # the copy saved for this site, the model's XML or another site's definition,
            # each mapped for this site (ClusterVMs.saved_xml, as `vm failover-start`)
            return vms.saved_xml(model.name, site, None)
        except (HypervisorError, OSError) as exc:
            raise StepFailed(
                "no-xml", f"{model.name}: no domain XML to define from: {exc}"
            ) from exc

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        model, site = _vm_site(ctx, args)
        if self.probe(ctx, args):
            return StepResult(False, f"{model.name} is already defined at {site}")
        _, where = self._xml(ctx, model, site, args)
        return StepResult(True, f"would define {model.name} at {site}", (f"XML from {where}",))

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        model, site = _vm_site(ctx, args)
        return _state(ctx, model, site) not in (VMState.UNDEFINED, "unknown")

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        model, site = _vm_site(ctx, args)
        if self.probe(ctx, args):
            return StepResult(False, f"{model.name} is already defined at {site}")
        xml, where = self._xml(ctx, model, site, args)
        try:
            cluster_vms(ctx).hypervisor(site).define(xml)
        except HypervisorError as exc:
            raise StepFailed("define-failed", f"{model.name} at {site}: {exc}") from exc
        return StepResult(True, f"defined {model.name} at {site} (XML from {where})")


@register
class Start(_VMStep):
    """Start the VM at the site, then confirm it is alive there (vm.verify_alive).

    Refused (vm-refused) while it runs at another site or a volume of it is not primary
    here; a site that cannot confirm the VM is stopped only after check.fenced (or with
    --force --accept-data-loss). vm-not-alive when it does not come up. Undo: vm.shutdown."""

    name = "vm.start"
    params = (
        *PLAN_ARGS,
        DOMAIN,
        Param("volumes", ParamKind.STR_LIST, "The volumes it boots from.", default=()),
        Param("after", ParamKind.STR_LIST, "Started after these.", default=()),
        Param("timeout", ParamKind.DURATION, "How long it has to come alive.", default=VERIFY_WAIT),
    )
    undo = "vm.shutdown"
    undo_restores = True
    verb = "start"

    def _refusals(
        self, ctx: StepContext, model: VM, site: str, dry: bool
    ) -> tuple[list[str], list[str]]:
        from drorch.virt.failover_checks import failover_refusals

        seen = _vmops.states(ctx, model)
        refusals = failover_refusals(ctx.cluster, ctx.env, model, site, seen)
        fenced = bool(ctx.facts.get("fenced")) or (ctx.force and ctx.accept_data_loss)
        blocking = [
            f"{r.code}: {r.message}"
            for r in refusals
            if not (r.forceable and fenced) and not (dry and r.code in EARLIER)
        ]
        checked = [f"{model.domain}: " + ", ".join(f"{s} {st}" for s, st in seen.items())]
        checked += [f"{r.code}: {r.message}" for r in refusals]
        return blocking, checked

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        model, site = _vm_site(ctx, args)
        if self.probe(ctx, args):
            return StepResult(False, f"{model.name} already runs at {site}")
        blocking, checked = self._refusals(ctx, model, site, dry=True)
        if blocking:
            raise StepFailed("vm-refused", "; ".join(blocking))
        return StepResult(True, f"would start {model.name} at {site}", tuple(checked))

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        model, site = _vm_site(ctx, args)
        return _state(ctx, model, site) == VMState.RUNNING

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        model, site = _vm_site(ctx, args)
        changed = not self.probe(ctx, args)
        if changed:
            blocking, _ = self._refusals(ctx, model, site, dry=False)
            if blocking:
                raise StepFailed("vm-refused", "; ".join(blocking))
            try:
                vms = cluster_vms(ctx)
                if ctx.facts.get("fenced"):  # the other site is confirmed fenced (check.fenced):
                    vms.hypervisor(site).start(model.domain)  # its silence is not a refusal
                else:
                    vms.start(model.name, site)
            except (VMOperationRefused, HypervisorError) as exc:
                raise StepFailed("vm-refused", f"{model.name} at {site}: {exc}") from exc
        started = ctx.clock.now()
        checked = _vmops.verify_alive(ctx, model, site, number(args, "timeout", VERIFY_WAIT))
        data: dict[str, object] = {
            "vm": model.name,
            "site": site,
            "started_at": started,
            "verified": True,
        }
        since = _stopped(ctx).get(model.name)
        if changed and isinstance(since, int | float):
            data["downtime_s"] = round(ctx.clock.now() - since, 3)  # stop -> verified here
        return StepResult(
            changed, f"{model.name} runs at {site} and is alive", tuple(checked), data=data
        )
