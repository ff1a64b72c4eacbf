"""A live migration between two `LibvirtHypervisor`s, from the source's side.

`migrate_between` is the body of `LibvirtHypervisor.migrate_live`: it refuses what must
not migrate (a VM not running at the source, one already running or paused at the
destination, a destination without a peer-to-peer URI), builds the request
(libvirt_request.py), runs the job (libvirt_migrate.py), and then confirms the end: on
success the VM runs at the destination and is gone from the source; on failure it says
where the VM is and tidies what is safe to tidy at the destination (libvirt_cleanup.py).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from drorch.virt.base import (
    HypervisorError,
    MigrationFailed,
    MigrationOptions,
    MigrationResult,
    ProgressCallback,
    VMRunningElsewhere,
    VMState,
)
from drorch.virt.libvirt_cleanup import SiteView, after_failed_migration
from drorch.virt.libvirt_migrate import (
    LibvirtMigrationJob,
    MigrationOutcome,
    failed_result,
    outcome_reason,
    progress_from_stats,
    run_migration,
)
from drorch.virt.libvirt_request import migration_request

if TYPE_CHECKING:
    from drorch.virt.libvirt import LibvirtHypervisor


def migrate_between(
    src: LibvirtHypervisor,
    vm: str,
    dest: LibvirtHypervisor,
    options: MigrationOptions,
    progress: ProgressCallback | None = None,
) -> MigrationResult:
    """Live-migrate `vm` from `src` to `dest` (see the module docstring)."""
    lv = src._lv
    dom = src._domain(vm)
    if src.state(vm) != VMState.RUNNING:
        raise MigrationFailed(
            f"{vm} is {src.state(vm)} at {src.site}: only a running VM live-migrates"
            " (use cold failover for a stopped one)"
        )
    dest_before = dest.state(vm)
    if dest_before in (VMState.RUNNING, VMState.PAUSED):
        raise VMRunningElsewhere(f"{vm} is already {dest_before} at {dest.site}; refusing")
    if not dest.peer_uri:
        raise HypervisorError(
            f"site {dest.site} has no peer-to-peer URI: set migration_uri on its node "
            "(e.g. qemu+tls://host/system)"
        )
    live_xml = src._call(f"XML of {vm}", dom.XMLDesc, lv.VIR_DOMAIN_XML_MIGRATABLE)
    persistent_xml = src._call(
        f"XML of {vm}", dom.XMLDesc, lv.VIR_DOMAIN_XML_INACTIVE | lv.VIR_DOMAIN_XML_MIGRATABLE
    )
    request = migration_request(
        lv, options, live_xml, persistent_xml, dest.localize, dest.migration_stream_uri()
    )
    job = LibvirtMigrationJob(dom, dest.peer_uri, request.params, request.flags)
    outcome = run_migration(
        job,
        options,
        src.clock,
        progress,
        poll_interval=src.poll_interval,
        abort_grace=src.abort_grace,
        start_timeout=max(30.0, 3 * src.connect_timeout),
    )
    if outcome.failed is None and outcome.finished:
        return _succeeded(src, vm, dest, outcome, "; ".join(request.reasons), progress)
    raise MigrationFailed(
        _after_failure(src, vm, dest, outcome, dest_before), failed_result(outcome)
    )


def _succeeded(
    src: LibvirtHypervisor,
    vm: str,
    dest: LibvirtHypervisor,
    outcome: MigrationOutcome,
    storage: str,
    progress: ProgressCallback | None,
) -> MigrationResult:
    lv = src._lv
    stats: dict[str, int] = {}
    # statistics are a courtesy; the migration itself succeeded
    with contextlib.suppress(lv.libvirtError):
        stats = dest.conn.lookupByName(vm).jobStats(lv.VIR_DOMAIN_JOB_STATS_COMPLETED)
    if stats and progress is not None:  # the final sample: what the whole job moved
        progress(
            progress_from_stats(stats, outcome.elapsed, outcome.max_downtime, outcome.postcopy)
        )
    problems = []
    if dest.state(vm) != VMState.RUNNING:
        problems.append(f"{vm} is {dest.state(vm)} at {dest.site}")
    if src.state(vm) != VMState.UNDEFINED:
        problems.append(f"{vm} is still defined at {src.site} ({src.state(vm)})")
    if problems:
        raise MigrationFailed(
            "libvirt reported success but " + "; ".join(problems), failed_result(outcome)
        )
    last = outcome.last
    return MigrationResult(
        converged=not outcome.postcopy,
        postcopy=outcome.postcopy,
        total_seconds=outcome.elapsed,
        downtime_ms=stats.get("downtime"),
        final_max_downtime_ms=round(outcome.max_downtime * 1000),
        iterations=stats.get("memory_iteration", last.iteration if last else 0),
        data_transferred=stats.get("data_processed", last.data_processed if last else 0),
        reason=f"{outcome_reason(outcome)}; {storage}",
    )


def _view(hyp: LibvirtHypervisor, vm: str) -> SiteView:
    try:
        return SiteView(hyp.site, hyp.state(vm))
    except HypervisorError as exc:
        return SiteView(hyp.site, None, str(exc))


def _after_failure(
    src: LibvirtHypervisor,
    vm: str,
    dest: LibvirtHypervisor,
    outcome: MigrationOutcome,
    dest_before: VMState,
) -> str:
    """Confirm where the VM is after a failed or aborted migration, tidy what is safe
    to tidy at dest (see libvirt_cleanup), and say all of it."""
    there = _view(dest, vm)
    incoming = there.state == VMState.PAUSED and dest.is_incoming(vm)
    cleanup = after_failed_migration(vm, _view(src, vm), there, dest_before, incoming)
    lines = [outcome_reason(outcome), *cleanup.lines]
    try:
        if cleanup.action == "undefine_dest":
            dest.undefine(vm)
        elif cleanup.action == "destroy_dest_incoming":
            dest.destroy(vm)
    except HypervisorError as exc:
        lines.append(f"that failed: {exc}")
    return "; ".join(lines)
