"""Test-recovery step types (the `test-recovery` drill): `recovery.prepare`,
`recovery.boot`, `recovery.verify`, `recovery.cleanup`.

Production keeps running at its site, replication keeps going. At the DR site each VM
boots as a copy (`drtr-XXXXXX-DOMAIN`) from qcow2 overlays on read-only NBD exports of
point-in-time views of the secondary replicas (of the live replica file when the driver
has no views), joined to an isolated network (a namespace with nothing but loopback).
Every trace is in a write-ahead manifest (drorch.virt.testcopy), so cleanup
works after a crash too (`drorch drill cleanup RUN_ID`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from drorch.environment import Environment
from drorch.model.types import VM, MonitorType
from drorch.replication.capabilities import PointInTime
from drorch.runbook.steps._where import cluster_vms, replica_node, site_name, text, volume
from drorch.runbook.steps.base import (
    Param,
    ParamKind,
    StepContext,
    StepFailed,
    StepResult,
    StepType,
    register,
)
from drorch.virt.testcopy import (
    Manifest,
    TestCopyError,
    Trace,
    cleanup,
    copy_domain,
    export_readonly,
    isolated_network,
    libvirt_network,
    links,
    netns_name,
    open_manifest,
    overlay,
    point_in_time,
    routes,
    workdir,
)
from drorch.virt.testcopy_xml import CopyXMLError, copy_xml_from, interfaces, serial_files

SITE = Param("site", ParamKind.STR, "The DR site where the copies boot.")


def _node(ctx: StepContext, site: str) -> str:
    return ctx.cluster.site(site_name(ctx, site)).nodes[0].name


def _replica_path(ctx: StepContext, vol_name: str, node: str) -> str:
    path = Path(volume(ctx, vol_name).paths[node])
    return str(path if path.is_absolute() else ctx.env.base_dir / path)


def _vm_volumes(ctx: StepContext, site: str) -> list[tuple[VM, str, str]]:
    """(vm, volume, the volume's replica node at `site`) for every VM's volume."""
    out = []
    for vm in ctx.cluster.vms:
        for v in vm.volumes:
            out.append((vm, v, replica_node(ctx, volume(ctx, v), site)))
    return out


def _manifest(ctx: StepContext) -> Manifest:
    if not ctx.run_id:
        raise StepFailed("no-run-id", "a test recovery needs its run id (run it as a runbook)")
    return open_manifest(ctx.env.state_dir, ctx.run_id)


def copy_xml(vm: VM, name: str, disks: list[str], network: str) -> str:
    """The copy's domain: the VM's size, its overlays as disks, one NIC on the isolated
    network, no other device that could reach production."""
    devs = "".join(
        f"    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file={quoteattr(d)}/><target dev='vd{chr(ord('a') + i)}' bus='virtio'/>"
        "</disk>\n"
        for i, d in enumerate(disks)
    )
    return (
        f"<domain type='qemu'>\n  <name>{escape(name)}</name>\n"
        f"  <memory unit='MiB'>{vm.memory_mib}</memory>\n  <vcpu>1</vcpu>\n"
        f"  <features><acpi/></features>\n  <devices>\n{devs}"
        f"    <interface type='network'><source network={quoteattr(network)}/></interface>\n"
        "  </devices>\n</domain>\n"
    )


@register
class Prepare(StepType):
    """Copy every VM's replicas at the site for a test boot: a read-only NBD export of
    each secondary replica, a qcow2 overlay on it, and an isolated network namespace.

    Production's replica is only read (qemu-nbd --read-only). Every trace is recorded
    before it is made; the undo (recovery.cleanup) removes them all."""

    name = "recovery.prepare"
    params = (SITE,)
    undo = "recovery.cleanup"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        site = text(args, "site")
        node = _node(ctx, site)
        runner = ctx.env.runner(node)
        checked = []
        for tool in ("qemu-nbd", "qemu-img", "ip"):
            ok = runner.run(["sh", "-c", f"command -v {tool}"], timeout=10).ok
            checked.append(f"{tool} on {node}: {'found' if ok else 'MISSING'}")
            if not ok:
                raise StepFailed("missing-tool", f"{tool} is not installed on {node}")
        for vm, v, where in _vm_volumes(ctx, site):
            path = _replica_path(ctx, v, where)
            if not ctx.env.runner(where).run(["test", "-e", path], timeout=10).ok:
                raise StepFailed("no-replica", f"{vm.name}: replica {path} of {v} on {where} "
                                 "does not exist")  # fmt: skip
            checked.append(f"{vm.name}/{v}: replica {path} on {where}")
        return StepResult(True, f"would copy {len(checked) - 3} replica(s) at {site} and make "
                          "an isolated network", checked=tuple(checked))  # fmt: skip

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return False  # each part checks whether it exists already: running it again is safe

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        site = text(args, "site")
        m = _manifest(ctx)
        work = workdir(ctx.env.state_dir, ctx.run_id)
        overlays: dict[str, str] = {}
        frozen: dict[str, bool] = {}
        try:
            net = isolated_network(m, ctx.env.runner(_node(ctx, site)), _node(ctx, site),
                                   netns_name(ctx.run_id))  # fmt: skip
            for _vm, v, where in _vm_volumes(ctx, site):
                if v in overlays:
                    continue
                runner = ctx.env.runner(where)
                rep = ctx.env.replicators.get((v, where))
                frozen[v] = isinstance(rep, PointInTime)
                if isinstance(rep, PointInTime):
                    source = point_in_time(m, runner, rep, where, work, v)
                else:
                    source = _replica_path(ctx, v, where)
                sock = export_readonly(m, runner, where, source, work, v)
                overlays[v] = overlay(m, runner, where, sock, work, v)
        except TestCopyError as exc:
            # a failed step's undo does not run in a rollback: remove what it made now
            left = remove_all(ctx, m)
            extra = f"; cleanup left: {'; '.join(left)}" if left else "; its traces were removed"
            raise StepFailed("test-copy-failed", f"{exc}{extra}") from exc
        live = sorted(v for v, f in frozen.items() if not f)
        what = "read-only exports" + ("" if live else " of point-in-time views")
        how = (f"; NOT point-in-time: {', '.join(live)} (the driver has no views: blocks "
               "replicated meanwhile show through)" if live else "")  # fmt: skip
        return StepResult(True, f"{len(overlays)} overlay(s) on {what} at {site}, isolated "
                          f"network {net}{how}", data={"overlays": overlays, "netns": net,
                          "site": site, "point_in_time": frozen})  # fmt: skip


@register
class Boot(StepType):
    """Boot a copy of every VM at the site from its overlays, on the isolated network.
    The copies are named drtr-XXXXXX-DOMAIN, so production's domains are never
    touched; recovery.cleanup undefines them."""

    name = "recovery.boot"
    params = (SITE,)
    undo = "recovery.cleanup"

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        site = site_name(ctx, text(args, "site"))
        names = [copy_domain(ctx.run_id or "RUN", vm.domain) for vm in ctx.cluster.vms]
        return StepResult(True, f"would boot {', '.join(names)} at {site}")

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        hv = ctx.env.hypervisor(text(args, "site"))
        return all(hv.state(copy_domain(ctx.run_id, vm.domain)) == "running"
                   for vm in ctx.cluster.vms)  # fmt: skip

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        site = site_name(ctx, text(args, "site"))
        m = _manifest(ctx)
        work = workdir(ctx.env.state_dir, ctx.run_id)
        hv = ctx.env.hypervisor(site)
        booted = []
        for vm in ctx.cluster.vms:
            name = copy_domain(ctx.run_id, vm.domain)
            disks = [str(work / f"{v}.qcow2") for v in vm.volumes]
            xml = self._xml(ctx, m, vm, site, name, disks, work)
            m.add(Trace("domain", site, name))
            hv.define(xml)
            if hv.state(name) != "running":
                hv.start(name)
            booted.append(name)
        return StepResult(True, f"booted {', '.join(booted) or 'nothing'} at {site}",
                          data={"copies": booted, "site": site})  # fmt: skip

    @staticmethod
    def _xml(
        ctx: StepContext, m: Manifest, vm: VM, site: str, name: str, disks: list[str], work: Path
    ) -> str:
        """From the VM's XML saved for the site (drorch.virt.testcopy_xml); the simulator,
        which boots nothing, takes a minimal domain when none is saved."""
        saved = cluster_vms(ctx).xml_store.read(vm, site)
        if saved is None:
            if ctx.cluster.hypervisor.driver == "sim":
                return copy_xml(vm, name, disks, netns_name(ctx.run_id))
            raise StepFailed(
                "no-saved-xml",
                f"no domain XML of {vm.name} is saved for {site}, so its copy cannot boot like"
                f" it: `drorch vm sync-xml {vm.name}` saves it (migrations do too)",
            )
        base = saved[0]
        network = None
        if interfaces(base):
            node = _node(ctx, site)
            uri = ctx.cluster.node(node)[1].libvirt_uri
            if uri is None:
                raise StepFailed("copy-xml", f"{vm.name} has NICs but {node} has no libvirt_uri")
            try:
                network = libvirt_network(m, ctx.env.runner(node), node, uri, work)
            except TestCopyError as exc:
                raise StepFailed("network-not-isolated", str(exc)) from exc
        try:
            return copy_xml_from(base, name, disks, network=network,
                                 serial_path=work / f"{name}.serial.log")  # fmt: skip
        except CopyXMLError as exc:
            raise StepFailed("copy-xml", f"{vm.name}: {exc}") from exc


@register
class Verify(StepType):
    """The copies run at the site, each overlay reads through to its export, and the
    isolated network has no link but loopback and no route anywhere else."""

    name = "recovery.verify"
    params = (SITE,)
    idempotent = True

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        return StepResult(False, f"would verify the copies at {text(args, 'site')}")

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return False

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        site = site_name(ctx, text(args, "site"))
        node = _node(ctx, site)
        runner = ctx.env.runner(node)
        hv = ctx.env.hypervisor(site)
        checked: list[str] = []
        for vm in ctx.cluster.vms:
            name = copy_domain(ctx.run_id, vm.domain)
            state = hv.state(name)
            checked.append(f"{name}: {state}")
            if state != "running":
                raise StepFailed("copy-not-running", f"{name} is {state} at {site}")
            checked += _verify_copy_monitors(ctx, vm, site, name)
        work = workdir(ctx.env.state_dir, ctx.run_id)
        for v in sorted({v for vm in ctx.cluster.vms for v in vm.volumes}):
            info = runner.run(["qemu-img", "info", "-U", str(work / f"{v}.qcow2")], timeout=30)
            if not info.ok or not re.search(r"backing file: nbd\+unix", info.stdout):
                raise StepFailed("overlay-unreadable", f"{v}: {info.stderr.strip()}")
            checked.append(f"{v}: overlay reads through its read-only export")
        net = netns_name(ctx.run_id)
        try:
            extra, devs = routes(runner, net), links(runner, net)
        except TestCopyError as exc:
            raise StepFailed("network-not-isolated", str(exc)) from exc
        if extra or devs != ["lo"]:
            raise StepFailed("network-not-isolated",
                             f"{net}: links {devs}, routes {extra}")  # fmt: skip
        checked.append(f"{net}: only loopback, no route out")
        n = len(ctx.cluster.vms)
        judged = sum(1 for c in checked if c.startswith("copy ") and ": " in c)
        more = f", {judged} monitor(s) pass on the copies" if judged else ""
        return StepResult(False, f"{n} copies run at {site}, isolated{more}",
                          checked=tuple(checked),
                          data={"verified": True, "site": site})  # fmt: skip


def _verify_copy_monitors(ctx: StepContext, vm: VM, site: str, name: str) -> list[str]:
    """The VM's monitors, judged on its copy: a heartbeat read from the copy's own serial
    log where production's reads the VM's serial file, a domain check of the copy. Any
    other monitor reaches production's addresses, not the copy on its isolated network:
    listed as not verified. Fails with monitor-failed."""
    if ctx.cluster.hypervisor.driver == "sim":
        return []
    from drorch.runbook.steps.monitor import check_monitor

    saved = cluster_vms(ctx).xml_store.read(vm, site)
    serials = serial_files(saved[0]) if saved is not None else set()
    copy_serial = str(workdir(ctx.env.state_dir, ctx.run_id) / f"{name}.serial.log")
    lines = []
    for spec in vm.monitors:
        target = spec.target
        if spec.type is MonitorType.HEARTBEAT and str(ctx.env.base_dir / target) in {
            str(ctx.env.base_dir / s) for s in serials
        }:
            mapped = dataclasses.replace(spec, target=copy_serial)
        elif spec.type is MonitorType.DOMAIN:
            mapped = dataclasses.replace(spec, target=name)
        else:
            lines.append(f"{name}/{spec.name} ({spec.type.value} {target}): not verified, it"
                         " reaches production, not the copy on its isolated network")  # fmt: skip
            continue
        # the copy is its own domain: a heartbeat check asks about it, not production's
        result, how = check_monitor(ctx, dataclasses.replace(vm, domain=name), mapped, site)
        if not result.passed:
            raise StepFailed("monitor-failed", f"copy {name}: {how}")
        lines.append(f"copy {name}: {how}")
    return lines


@register
class Cleanup(StepType):
    """Remove every trace of the test recovery, in reverse order: the copies
    (undefined), the NBD exports (stopped by pid), the overlays, the network namespace,
    the work directory. Idempotent; `drorch drill cleanup RUN_ID` runs the same."""

    name = "recovery.cleanup"
    params = (Param("site", ParamKind.STR, "The DR site (unused: the manifest says).",
                    default=""),)  # fmt: skip
    idempotent = True

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        m = _manifest(ctx)
        return StepResult(bool(m.traces), f"would remove {len(m.traces)} trace(s)")

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return not _manifest(ctx).path.exists()

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        m = _manifest(ctx)
        n = len(m.traces)
        problems = remove_all(ctx, m)
        if problems:
            raise StepFailed("cleanup-incomplete", "; ".join(problems))
        return StepResult(n > 0, f"removed {n} trace(s)", data={"removed": n})


def remove_all(ctx: StepContext, m: Manifest) -> list[str]:
    def undefine(t: Trace) -> None:
        hv = ctx.env.hypervisor(t.node)
        if hv.state(t.name) == "undefined":
            return
        if hv.state(t.name) != "shutoff":
            hv.destroy(t.name)
        hv.undefine(t.name)

    return cleanup(m, ctx.env.runner, undefine, views=views_of(ctx.env))


def views_of(env: Environment) -> Callable[[str, str], PointInTime | None]:
    """The driver that made a point-in-time view of `volume` on `node`, if it can."""

    def find(volume: str, node: str) -> PointInTime | None:
        rep = env.replicators.get((volume, node))
        return rep if isinstance(rep, PointInTime) else None

    return find
