"""Check step types (read only; preflight and gates): `check.sites_reachable`,
`check.quorum`, `check.replication_in_sync`, `check.monitors`, `check.fenced`.

Each observes through the Environment and either passes (changed=False, with every
observation in `checked`) or fails with a stable code. Check mode does the same
observations, so a dry run reports exactly what the real run would find now.
"""

from __future__ import annotations

from collections.abc import Mapping

from drorch.model.states import in_sync
from drorch.runbook.steps import _witness
from drorch.runbook.steps._sync import unreplicated_lag
from drorch.runbook.steps._where import (
    PLAN_ARGS,
    names,
    replica,
    site_name,
    status,
    text,
    vm,
    volume_names,
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
from drorch.runbook.steps.monitor import check_monitor


class _Check(StepType):
    """A read-only check: check mode and run are the same observation."""

    idempotent = True

    def observe(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        raise NotImplementedError

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        return self.observe(ctx, args)

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return False  # a check has no lasting effect: an interrupted one checks again

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        return self.observe(ctx, args)


@register
class SitesReachable(_Check):
    """Every named site (default: all) answers: its hypervisor and its replicas.

    Fails with site-unreachable naming each site that did not answer and why."""

    name = "check.sites_reachable"
    params = (Param("sites", ParamKind.STR_LIST, "The sites (default: every site).", default=()),)

    def observe(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        from drorch.observe import observe

        wanted = [site_name(ctx, s) for s in names(args, "sites")] or [
            s.name for s in ctx.cluster.sites
        ]
        snap = observe(ctx.cluster, ctx.env).snapshot
        checked = [
            f"site {s}: {'reachable' if snap.is_reachable(s) else 'UNREACHABLE'}" for s in wanted
        ]
        lost = [s for s in wanted if not snap.is_reachable(s)]
        if lost:
            why = [u for u in snap.unobserved if any(s in u for s in lost)][:4]
            raise StepFailed(
                "site-unreachable",
                f"site(s) {', '.join(lost)} do not answer" + (f": {'; '.join(why)}" if why else ""),
                data={"unreachable": lost},
            )
        return StepResult(False, f"site(s) {', '.join(wanted)} reachable", tuple(checked))


@register
class Quorum(_Check):
    """The site holds quorum: the witness's lease (real witness over mutual TLS, or the
    simulated one); without a witness, every site must answer (a majority of two).

    When nobody holds a live lease at the real witness (no agent keeps one, as in
    `make demo`), the run asks for it as the site (a want:true heartbeat) and passes if
    it is granted; check mode only reports that it would ask. Fails with no-quorum
    (another site holds it, or the grant was refused) or witness-unreachable. With
    `--force --accept-data-loss` a missing quorum is reported and overridden (the
    operator vouches that the other site is down: site-failover's escape hatch)."""

    name = "check.quorum"
    params = (Param("site", ParamKind.STR, "The site that must hold quorum."),)

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        return self._observe(ctx, args, ask=False)

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        return self._observe(ctx, args, ask=True)

    def observe(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        return self._observe(ctx, args, ask=False)

    def _observe(self, ctx: StepContext, args: Mapping[str, object], ask: bool) -> StepResult:
        site = site_name(ctx, text(args, "site"))
        if ctx.cluster.witness is None:
            reach = SitesReachable().observe(ctx, {"sites": ()})
            return StepResult(
                False, f"{site}: no witness; every site answers (majority)", reach.checked
            )
        view = _witness.ask(ctx, site)
        seen = [f"{view.how}: holder {view.holder or 'none'}, epoch {view.epoch}"]
        if view.holder is None and _witness.simulated(ctx) is None:
            if not ask:
                return StepResult(False, f"nobody holds quorum: would ask for it as {site}",
                                  tuple(seen), data={"epoch": view.epoch})  # fmt: skip
            view = _witness.ask(ctx, site, want=True)
            seen.append(f"asked for the lease as {site}: holder {view.holder or 'none'}, "
                        f"epoch {view.epoch}")  # fmt: skip
        if view.holder != site:
            message = f"site {site} does not hold quorum ({seen[-1]})"
            if ctx.force and ctx.accept_data_loss:
                return StepResult(False, f"{message}: overridden by --force --accept-data-loss",
                                  tuple(seen), data={"holder": view.holder,
                                                     "overridden": True})  # fmt: skip
            raise StepFailed("no-quorum", message,
                             data={"holder": view.holder, "epoch": view.epoch})  # fmt: skip
        return StepResult(
            False,
            f"site {site} holds quorum (epoch {view.epoch})",
            tuple(seen),
            data={"epoch": view.epoch},
        )


@register
class ReplicationInSync(_Check):
    """Each named volume (default: all) is in sync: UpToDate, Connected, nothing
    acknowledged left to send (a sync replica's queue of writes still waiting for the
    peer does not count: nobody was told they are done), the peer UpToDate. With
    `site`, asks the replica there; else every replica. Also takes a plan-style
    `target` (one volume).

    Fails with not-in-sync, naming each volume and its state."""

    name = "check.replication_in_sync"
    params = (
        Param("volumes", ParamKind.STR_LIST, "The volumes (default: every volume).", default=()),
        Param(
            "site", ParamKind.STR, "Ask the replica at this site (default: every one).", default=""
        ),
        Param("target", ParamKind.STR, "One volume (instead of `volumes`).", default=""),
    )

    def observe(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        given = names(args, "volumes") or ((text(args, "target"),) if text(args, "target") else ())
        site = text(args, "site")
        checked: list[str] = []
        behind: list[str] = []
        for name in volume_names(ctx, given):
            nodes = list(ctx.cluster.volume(name).paths)
            for node in nodes:
                if site and ctx.cluster.node(node)[0].name != site:
                    continue
                where, rep = replica(ctx, name, node=node)
                st = status(rep, f"{name}@{where}")
                ok = in_sync(
                    st.disk,
                    st.connection,
                    peer_disk=st.peer_disk,
                    out_of_sync_bytes=st.out_of_sync_bytes,
                    lag_bytes=unreplicated_lag(st),  # a sync queue is not a backlog
                )
                line = (
                    f"{name}@{where}: {st.role} {st.disk}/{st.peer_disk} {st.connection}"
                    f" {st.mode}, {st.out_of_sync_bytes} B out of sync"
                )
                checked.append(line)
                if not ok:
                    behind.append(line)
        if behind:
            raise StepFailed("not-in-sync", "; ".join(behind), data={"behind": behind})
        return StepResult(False, f"{len(checked)} replica(s) in sync", tuple(checked))


@register
class Monitors(_Check):
    """Every monitor of the named VMs (default: all VMs) passes at the site.

    Fails with monitor-failed listing each failing monitor and its reason."""

    name = "check.monitors"
    params = (
        Param("site", ParamKind.STR, "The site the VMs run at."),
        Param("vms", ParamKind.STR_LIST, "The VMs (default: every VM).", default=()),
    )

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        """A dry run verifies what runs at the site now; a VM that is not running there
        yet (earlier steps of the run would start it) is listed, not failed."""
        return self._observe(ctx, args, dry=True)

    def observe(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        return self._observe(ctx, args, dry=False)

    def _observe(self, ctx: StepContext, args: Mapping[str, object], dry: bool) -> StepResult:
        site = site_name(ctx, text(args, "site"))
        wanted = [vm(ctx, n) for n in names(args, "vms")] or list(ctx.cluster.vms)
        checked: list[str] = []
        failed: list[str] = []
        later = 0
        for v in wanted:
            if dry and not _running_at(ctx, v.domain, site):
                later += len(v.monitors)
                n = len(v.monitors)
                checked.append(f"{v.name} is not running at {site} now: {n} monitor(s) later")
                continue
            for spec in v.monitors:
                result, how = check_monitor(ctx, v, spec, site)
                checked.append(how)
                if not result.passed:
                    failed.append(how)
        if failed:
            raise StepFailed("monitor-failed", "; ".join(failed), data={"failed": failed})
        if later:
            return StepResult(False, f"would verify {later} monitor(s) at {site} once the VMs"
                              " run there", tuple(checked))  # fmt: skip
        return StepResult(False, f"{len(checked)} monitor(s) pass at {site}", tuple(checked))


def _running_at(ctx: StepContext, domain: str, site: str) -> bool:
    try:
        return ctx.env.hypervisor(site).state(domain).value == "running"
    except Exception:  # unreachable or unknown: the real check will say why
        return True


@register
class Fenced(_Check):
    """The lost site (`target`) can no longer write: the plan confirmed it, the simulated
    witness says so, or the real witness no longer counts it as the lease holder (asked
    as the survivor, `site`). Records facts.fenced for later `when:` conditions.

    Fails with not-fenced (retried by the shipped runbook while the lease may still run),
    or at once with lost-site-answers when the "lost" site still answers."""

    name = "check.fenced"
    params = (
        *PLAN_ARGS,
        Param("confirmed", ParamKind.BOOL, "Fencing was confirmed when planned.", default=False),
        Param("how", ParamKind.STR, "How it was confirmed.", default=""),
    )

    def observe(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        from drorch.observe import observe

        lost = site_name(ctx, text(args, "target"))
        survivor = text(args, "site")
        snap = observe(ctx.cluster, ctx.env).snapshot
        checked = [
            f"planned: {'confirmed' if args.get('confirmed') else 'not confirmed'}"
            + (f" ({args['how']})" if args.get("how") else "")
        ]
        fenced = bool(snap.fenced.get(lost))
        if lost in snap.fenced_reason:
            checked.append(f"observed: {snap.fenced_reason[lost]}")
        if not fenced and survivor and _witness.real_witness(ctx):
            view = _witness.ask(ctx, site_name(ctx, survivor))
            checked.append(f"{view.how} as {survivor}: holder {view.holder or 'none'}")
            fenced = view.holder != lost and not snap.is_reachable(lost)
        ctx.facts["fenced"] = fenced
        if not fenced and snap.is_reachable(lost):
            # it answers: it is not lost, and waiting will not make it so (not retried)
            raise StepFailed(
                "lost-site-answers",
                f"site {lost} answers, so it is not lost: a failover would run two sites at"
                f" once; move with `drorch migrate --to {survivor or 'SITE'}` instead, or"
                f" power {lost} off first",
                data={"site": lost},
            )
        if not fenced:
            raise StepFailed(
                "not-fenced",
                f"site {lost} is not confirmed fenced: " + "; ".join(checked),
                data={"site": lost},
            )
        return StepResult(False, f"site {lost} is fenced", tuple(checked), data={"site": lost})
