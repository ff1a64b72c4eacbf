"""VM operations shared by the VM step types: is the guest alive at a site (hypervisor
state, then its heartbeat monitors), the live-migration progress bar, and the cold move
of one VM (shut down at the source, switch its volumes, define, start, verify)."""

from __future__ import annotations

from drorch.model.states import Role
from drorch.model.types import VM, MonitorType
from drorch.replication.base import ReplicationError
from drorch.runbook.steps import _promotion
from drorch.runbook.steps._sync import users_running
from drorch.runbook.steps._where import cluster_vms, is_sim, replica, status
from drorch.runbook.steps.base import StepContext, StepFailed
from drorch.virt.base import HypervisorError, MigrationProgress, VMState
from drorch.virt.cluster_vms import VMOperationRefused
from drorch.virt.migration_text import progress_detail

ACTIVE = (VMState.RUNNING, VMState.PAUSED)


def states(ctx: StepContext, vm: VM) -> dict[str, VMState | str]:
    return cluster_vms(ctx).states(vm.domain)


def verify_alive(ctx: StepContext, vm: VM, site: str, timeout: float) -> list[str]:
    """The guest runs at `site` only, and its heartbeat monitors pass there within
    `timeout`. Returns what was checked; StepFailed vm-not-alive otherwise."""
    seen = states(ctx, vm)
    checked = [f"{vm.domain}: " + ", ".join(f"{s} {st}" for s, st in seen.items())]
    here = seen.get(site)
    if here != VMState.RUNNING:
        raise StepFailed(
            "vm-not-alive",
            f"{vm.name} is {here} at {site}, not running",
            data={"vm": vm.name, "state": str(here)},
        )
    twice = [s for s, st in seen.items() if s != site and st in ACTIVE]
    if twice:
        raise StepFailed("vm-not-alive", f"{vm.name} also runs at {', '.join(twice)}")
    beats = [m for m in vm.monitors if m.type is MonitorType.HEARTBEAT]
    if is_sim(ctx) or not beats:
        why = "simulated guest" if is_sim(ctx) else "no heartbeat monitor configured"
        checked.append(f"{vm.name}: hypervisor state only ({why})")
        return checked
    from drorch.runbook.steps.monitor import check_monitor

    for spec in beats:
        result, how = check_monitor(ctx, vm, spec, site, timeout=timeout)
        checked.append(how)
        if not result.passed:
            raise StepFailed(
                "vm-not-alive",
                f"{vm.name} runs at {site} but does not heartbeat: {how}",
                data={"vm": vm.name},
            )
    return checked


class MigrationProgressLine:
    """Feeds ctx.progress from migration samples with `drorch vm migrate`'s detail line:
    done = total - remaining; a change of strategy (downtime raised, auto-converge,
    post-copy) is noted as a line of its own."""

    def __init__(self, ctx: StepContext, vm: str) -> None:
        self.ctx = ctx
        self.vm = vm
        self.mode: tuple[int, bool, bool] | None = None
        self.samples = 0

    def __call__(self, p: MigrationProgress) -> None:
        mode = (p.max_downtime_ms, p.auto_converge, p.postcopy)
        if self.samples and mode != self.mode:
            extra = " auto-converge" if p.auto_converge else ""
            extra += " post-copy" if p.postcopy else ""
            self.ctx.progress.note(f"{self.vm}: max downtime {p.max_downtime_ms} ms{extra}")
        self.mode = mode
        self.samples += 1
        self.ctx.progress.update(
            p.data_total - p.data_remaining, max(p.data_total, 1), progress_detail(p)
        )


def _switch_volumes(ctx: StepContext, vm: VM, source: str | None, site: str) -> list[str]:
    done: list[str] = []
    for name in vm.volumes:
        if source is not None:
            try:
                node, rep = replica(ctx, name, source)
                st = status(rep, f"{name}@{node}")
            except StepFailed:
                st = None  # a lost source cannot be demoted; the promotion checks decide
            if st is not None and st.role == Role.PRIMARY:
                users = [u for u in users_running(ctx, name, node) if u != vm.name]
                if users:
                    raise StepFailed(
                        "volume-in-use",
                        f"{name} is also used by {', '.join(users)} running at {source}",
                    )
                try:
                    rep.demote()
                except ReplicationError as exc:
                    raise StepFailed("demote-failed", f"demote {name} on {node}: {exc}") from exc
                done.append(f"demoted {name} on {node}")
        node, _ = replica(ctx, name, site)
        # fresh: moving back to the site that holds the lease needs a new grant from it
        epoch = _next_epoch(ctx, name)
        _, message, _ = _promotion.promote(ctx, name, site, node, epoch, False, fresh=True)
        done.append(message)
    return done


def _next_epoch(ctx: StepContext, name: str) -> int:
    """One above every epoch the volume's answering replicas have seen."""
    seen = [0]
    for (vol, _node), rep in ctx.env.replicators.items():
        if vol == name:
            try:
                seen.append(rep.status().epoch)
            except ReplicationError:
                continue
    return max(seen) + 1


def cold_move(ctx: StepContext, vm: VM, site: str, timeout: float) -> list[str]:
    """Move `vm` to `site` cold. Returns what was done, in order."""
    vms = cluster_vms(ctx)
    done: list[str] = []
    try:
        source = vms.running_at(vm.domain)
    except VMOperationRefused as exc:
        raise StepFailed("vm-running-twice", str(exc)) from exc
    try:
        if source is not None and source != site:
            vms.sync_xml(vm.name, source)  # its current definition, mapped for each site
        xml, where = vms.saved_xml(vm.name, site, None)
        if source is not None and source != site:
            result = vms.shutdown(vm.name, source, timeout)
            done.append(f"{vm.name} {'shut down' if result.graceful else 'destroyed'} at {source}")
        if source != site:
            done += _switch_volumes(ctx, vm, source or _other(ctx, site), site)
            fenced = bool(ctx.facts.get("fenced")) or _promotion.forced(ctx)
            start = vms.failover_start(vm.name, site, xml, force_unreachable=fenced)
            done.append(f"{start.reason} (XML from {where})")
    except (VMOperationRefused, HypervisorError) as exc:
        raise StepFailed(
            "cold-move-failed", f"{vm.name} to {site}: {exc}", data={"done": done}
        ) from exc
    done += verify_alive(ctx, vm, site, timeout)
    return done


def restart_at(ctx: StepContext, vm: VM, site: str, timeout: float) -> list[str]:
    """Start `vm` again at `site`, where it ran before a failed move left it running
    nowhere: its volumes there are made primary again (with a fresh witness grant: the
    site's old epoch is already seen), it boots from its saved definition, and it must be
    alive there (`verify_alive`). Returns what was done."""
    done: list[str] = []
    for name in vm.volumes:
        node, _ = replica(ctx, name, site)
        _, message, _ = _promotion.promote(ctx, name, site, node, None, False, fresh=True)
        done.append(message)
    vms = cluster_vms(ctx)
    try:
        xml, where = vms.saved_xml(vm.name, site, None)
        start = vms.failover_start(vm.name, site, xml, force_unreachable=False)
    except (VMOperationRefused, HypervisorError, OSError) as exc:
        raise StepFailed("vm-refused", f"{vm.name} at {site}: {exc}", data={"done": done}) from exc
    done.append(f"{start.reason} (XML from {where})")
    return done + verify_alive(ctx, vm, site, timeout)


def _other(ctx: StepContext, site: str) -> str | None:
    others = [s.name for s in ctx.cluster.sites if s.name != site]
    return others[0] if len(others) == 1 else None
