"""What to ask libvirt for: the flags and parameters of one live migration. PURE.

`lv` is the libvirt module (for its constants), passed in so this stays free of I/O and
is tested with the real constants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drorch.virt.base import MigrationOptions
from drorch.virt.xmlmap import storage_plan

Localize = Callable[[str], tuple[str, list[str]]]


@dataclass(frozen=True)
class MigrationRequest:
    flags: int
    params: dict[str, Any]
    reasons: tuple[str, ...]  # why each optional flag or parameter is there


def migration_request(
    lv: Any,
    options: MigrationOptions,
    live_xml: str,
    persistent_xml: str,
    localize: Localize,
    stream_uri: str,
) -> MigrationRequest:
    """`live_xml` is the running domain's migratable XML, `persistent_xml` its inactive
    definition; `localize` rewrites XML for the destination site (disk paths);
    `stream_uri` is where the memory goes unless `options.dest_uri` says otherwise."""
    flags = (
        lv.VIR_MIGRATE_LIVE
        | lv.VIR_MIGRATE_PEER2PEER
        | lv.VIR_MIGRATE_PERSIST_DEST
        | lv.VIR_MIGRATE_UNDEFINE_SOURCE
    )
    reasons: list[str] = []
    plan = storage_plan(live_xml, options.shared_storage)
    reasons.append(plan.reason)
    if plan.copy_storage:
        flags |= lv.VIR_MIGRATE_NON_SHARED_DISK
    if options.auto_converge:
        # libvirt 9 / QEMU 7.2 accept auto-converge only at the start (see libvirt_migrate)
        flags |= lv.VIR_MIGRATE_AUTO_CONVERGE
        reasons.append("auto-converge armed at the start; QEMU throttles when it must")
    if options.allow_postcopy:
        flags |= lv.VIR_MIGRATE_POSTCOPY
        reasons.append("post-copy enabled, switched to only if the deadline nears")
    params: dict[str, Any] = {lv.VIR_MIGRATE_PARAM_URI: options.dest_uri or stream_uri}
    if options.bandwidth_mibps > 0:
        params[lv.VIR_MIGRATE_PARAM_BANDWIDTH] = options.bandwidth_mibps
        reasons.append(f"bandwidth limited to {options.bandwidth_mibps} MiB/s")
    if options.dest_xml:
        params[lv.VIR_MIGRATE_PARAM_DEST_XML] = options.dest_xml
        params[lv.VIR_MIGRATE_PARAM_PERSIST_XML] = localize(persistent_xml)[0]
        reasons.append("destination XML given by the caller")
    else:
        dest_xml, changes = localize(live_xml)
        if changes:
            params[lv.VIR_MIGRATE_PARAM_DEST_XML] = dest_xml
            params[lv.VIR_MIGRATE_PARAM_PERSIST_XML] = localize(persistent_xml)[0]
            reasons.append("disks remapped for the destination: " + "; ".join(changes))
    return MigrationRequest(flags, params, tuple(reasons))
