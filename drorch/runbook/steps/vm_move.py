"""VM step types that move a VM between sites: `vm.migrate_live` and `vm.cold_failover`
(the VM family, `vm.py`, holds the rest). Both end by confirming the guest is alive at
the target, and fail the step if it is not."""

from __future__ import annotations

from collections.abc import Mapping

from drorch.runbook.steps import _vmops
from drorch.runbook.steps._where import PLAN_ARGS, cluster_vms, number, text
from drorch.runbook.steps.base import (
    Param,
    ParamKind,
    StepContext,
    StepFailed,
    StepResult,
    StepType,
    register,
)
from drorch.runbook.steps.vm import DOMAIN, VERIFY_WAIT, _vm_site
from drorch.virt.base import HypervisorError, VMState
from drorch.virt.cluster_vms import VMOperationRefused, VolumesNotOpen, migration_options


@register
class MigrateLive(StepType):
    """Live-migrate the VM to the site with the cluster's convergence policy and the
    live progress bar of `drorch vm migrate`, then confirm it is alive there.

    When it does not converge in time the VM keeps running at the source: with
    `fallback: cold` it is then moved cold (shut down, volumes switched, defined,
    started, verified) and facts.migration_converged is false; with `fallback: fail`
    (default) the step fails with migration-failed. vm-not-alive when the guest does not
    live at the target. Records facts.migration_converged. Undo: migrate it back, with
    `restore`: the guest ran at the site when the run started, so if it runs nowhere now
    (a failed cold fallback shut it down at the source), it is started there on primary
    volumes (promoted with a fresh witness grant) and must be alive there."""

    name = "vm.migrate_live"
    params = (
        *PLAN_ARGS,
        DOMAIN,
        Param("from_site", ParamKind.STR, "Where it runs now (default: observed).", default=""),
        Param(
            "max_downtime", ParamKind.FLOAT, "Pause budget, s (default: the policy's).", default=0.0
        ),
        Param("volumes", ParamKind.STR_LIST, "Its volumes, open at both sites.", default=()),
        Param(
            "fallback",
            ParamKind.STR,
            "On non-convergence: fail or cold.",
            default="fail",
            choices=("fail", "cold"),
        ),
        Param(
            "deadline", ParamKind.DURATION, "Give up after (default: the policy's).", default=0.0
        ),
        Param(
            "timeout",
            ParamKind.DURATION,
            "How long the guest has to be alive after.",
            default=VERIFY_WAIT,
        ),
        Param(
            "restore",
            ParamKind.BOOL,
            "Undo: it ran here; start it here if it runs nowhere.",
            default=False,
        ),
    )
    undo = "vm.migrate_live"
    undo_restores = True

    def describe(self, args: Mapping[str, object]) -> str:
        src = text(args, "from_site")
        return (
            f"live-migrate {text(args, 'target')} {src + ' ' if src else ''}-> {text(args, 'site')}"
        )

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        model, site = _vm_site(ctx, args)
        seen = _vmops.states(ctx, model)
        checked = [
            f"{model.domain}: " + ", ".join(f"{s} {st}" for s, st in seen.items()),
            f"migratable: {model.migratable}",
            f"fallback: {text(args, 'fallback')}",
        ]
        if seen.get(site) == VMState.RUNNING:
            return StepResult(False, f"{model.name} already runs at {site}", tuple(checked))
        if not model.migratable:
            raise StepFailed("not-migratable", f"{model.name} is not migratable")
        src = text(args, "from_site") or next(
            (s for s, st in seen.items() if st in _vmops.ACTIVE), ""
        )
        if not src and args.get("restore"):
            return StepResult(
                True, f"would start {model.name} at {site}: it runs nowhere", tuple(checked)
            )
        if not src or seen.get(src) not in _vmops.ACTIVE:
            raise StepFailed(
                "vm-not-running", f"{model.name} is not running at {src or 'any site'}"
            )
        for s in (src, site):
            if not isinstance(seen.get(s), VMState):
                raise StepFailed("site-unreachable", f"site {s}: {seen.get(s)}")
        return StepResult(True, f"would live-migrate {model.name} {src} -> {site}", tuple(checked))

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        model, site = _vm_site(ctx, args)
        return _vmops.states(ctx, model).get(site) == VMState.RUNNING

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        model, site = _vm_site(ctx, args)
        timeout = number(args, "timeout", VERIFY_WAIT)
        if self.probe(ctx, args):
            checked = _vmops.verify_alive(ctx, model, site, timeout)
            return StepResult(False, f"{model.name} already runs at {site}", tuple(checked))
        seen = _vmops.states(ctx, model).values()
        if args.get("restore") and not any(st in _vmops.ACTIVE for st in seen):
            done = _vmops.restart_at(ctx, model, site, timeout)
            return StepResult(True, f"{model.name} ran nowhere: started again at {site}",
                              tuple(done), data={"vm": model.name, "site": site})  # fmt: skip
        policy = ctx.cluster.migration
        deadline = number(args, "deadline", 0.0) or policy.deadline
        left = ctx.remaining()
        options = migration_options(
            policy,
            max_downtime=number(args, "max_downtime", 0.0) or None,
            deadline=deadline if left is None else max(1.0, min(deadline, left - timeout)),
        )
        bar = _vmops.MigrationProgressLine(ctx, model.name)
        try:
            report = cluster_vms(ctx).migrate(model.name, site, options, bar)
        except VolumesNotOpen as exc:
            if text(args, "fallback") != "cold":
                raise StepFailed("migration-refused", f"{model.name} -> {site}: {exc}") from exc
            # nothing moved: the cold move switches the volumes itself
            ctx.facts["migration_converged"] = False
            ctx.progress.note(f"{model.name}: no live hand-over open ({exc}); moving it cold")
            start = ctx.clock.monotonic()
            done = _vmops.cold_move(ctx, model, site, timeout)
            return StepResult(
                True,
                f"{model.name}: its volumes are not open at {site} for a live hand-over;"
                f" moved cold to {site}",
                tuple(done),
                data={"fallback": "cold", "downtime_s": ctx.clock.monotonic() - start,
                      "verified": True, "refused": [r.code for r in exc.refusals]},
            )  # fmt: skip
        except (VMOperationRefused, HypervisorError) as exc:
            raise StepFailed("migration-refused", f"{model.name} -> {site}: {exc}") from exc
        data: dict[str, object] = dict(report.as_dict())
        if report.ok:
            ctx.facts["migration_converged"] = True
            checked = _vmops.verify_alive(ctx, model, site, timeout)
            data["verified"] = True
            r = report.result
            downtime = f", downtime {r.downtime_ms} ms" if r and r.downtime_ms is not None else ""
            if r and r.downtime_ms is not None:
                data["downtime_s"] = r.downtime_ms / 1000
            return StepResult(
                True,
                f"migrated {model.name} {report.source} -> {site}{downtime}",
                tuple(checked),
                data=data,
            )
        ctx.facts["migration_converged"] = False
        if text(args, "fallback") != "cold":
            raise StepFailed(
                "migration-failed",
                f"{model.name}: {report.reason}; it still runs at {report.source}",
                data=data,
            )
        ctx.progress.note(
            f"{model.name}: live migration did not converge ({report.reason}); moving it cold"
        )
        start = ctx.clock.monotonic()
        done = _vmops.cold_move(ctx, model, site, timeout)
        data |= {"fallback": "cold", "downtime_s": ctx.clock.monotonic() - start, "verified": True}
        return StepResult(
            True,
            f"{model.name}: live migration did not converge; moved cold to {site}",
            tuple(done),
            data=data,
        )

    def undo_args(self, args: Mapping[str, object], result: StepResult) -> dict[str, object]:
        back = str(result.data.get("from") or text(args, "from_site"))
        return {
            "target": text(args, "target"),
            "site": back,
            "from_site": text(args, "site"),
            "fallback": text(args, "fallback"),
            "restore": True,
        }


@register
class ColdFailover(StepType):
    """Move the VM to the site cold: shut it down where it runs (if that site answers),
    demote its volumes there, promote them here through the promotion checks, define it
    from saved XML, start it and confirm it is alive.

    A lost source counts as stopped only after check.fenced (or --force
    --accept-data-loss); promote-refused, cold-move-failed, vm-not-alive otherwise.
    Undo: a cold failover back to where it ran (also after a failure midway: it is
    started there again if it runs nowhere)."""

    name = "vm.cold_failover"
    params = (
        *PLAN_ARGS,
        Param("timeout", ParamKind.DURATION, "Shutdown and alive wait, each.", default=60.0),
    )
    undo = "vm.cold_failover"
    undo_restores = True
    verb = "cold failover"

    def describe(self, args: Mapping[str, object]) -> str:
        return f"cold failover of {text(args, 'target')} to {text(args, 'site')}"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        model, site = _vm_site(ctx, args)
        seen = _vmops.states(ctx, model)
        checked = [f"{model.domain}: " + ", ".join(f"{s} {st}" for s, st in seen.items())]
        if seen.get(site) == VMState.RUNNING:
            return StepResult(False, f"{model.name} already runs at {site}", tuple(checked))
        try:
            _, where = cluster_vms(ctx).saved_xml(model.name, site, None)
        except (VMOperationRefused, HypervisorError, OSError) as exc:
            raise StepFailed("no-xml", str(exc)) from exc
        checked.append(f"XML from {where}")
        from drorch.runbook.steps import _promotion

        for name in model.volumes:
            v = _promotion.assess(ctx, name, site, "", None, False)
            checked += v.checked
            if v.refusals and not _promotion.forced(ctx):
                raise _promotion.refuse(name, v.node, v.refusals)
        return StepResult(True, f"would move {model.name} cold to {site}", tuple(checked))

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        model, site = _vm_site(ctx, args)
        return _vmops.states(ctx, model).get(site) == VMState.RUNNING

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        model, site = _vm_site(ctx, args)
        start = ctx.clock.monotonic()
        changed = not self.probe(ctx, args)
        seen = _vmops.states(ctx, model)
        source = next((s for s, st in seen.items() if st in _vmops.ACTIVE and s != site), "")
        try:
            done = _vmops.cold_move(ctx, model, site, number(args, "timeout", 60.0))
        except StepFailed as exc:  # its undo moves it back to `source`
            raise StepFailed(exc.code, exc.message, data={**exc.data, "from": source}) from exc
        return StepResult(
            changed,
            f"{model.name} moved cold to {site} and alive",
            tuple(done),
            data={
                "vm": model.name,
                "site": site,
                "from": source if changed else "",
                "verified": True,
                "downtime_s": ctx.clock.monotonic() - start,
            },
        )

    def undo_args(self, args: Mapping[str, object], result: StepResult) -> dict[str, object]:
        back = result.data.get("from")
        if not back:
            return {}  # it ran nowhere else before: nothing to move back
        keep = {"timeout": args["timeout"]} if "timeout" in args else {}
        return {"target": text(args, "target"), "site": str(back), **keep}
