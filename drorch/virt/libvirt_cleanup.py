"""After a failed or aborted live migration: where is the VM, and what is safe to tidy?
PURE: the driver observes the states and carries out the one action decided here.

The VM must end up running at the source and defined once. So, only when the source
still runs it:

* an inactive copy at the destination that the failed migration left behind (the
  destination had no definition before) is undefined - a standby definition the operator
  made before the migration is kept;
* a destination copy still paused waiting for the incoming migration never ran the
  guest and is discarded.

Anything else is reported, never touched: a copy running at the destination, or a
source that does not run the VM (e.g. after a failed post-copy) needs a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from drorch.virt.base import VMState

CleanupAction = Literal["none", "undefine_dest", "destroy_dest_incoming"]


@dataclass(frozen=True)
class SiteView:
    site: str
    state: VMState | None  # None: could not be asked
    error: str = ""


@dataclass(frozen=True)
class Cleanup:
    action: CleanupAction
    lines: tuple[str, ...]


def after_failed_migration(
    vm: str,
    source: SiteView,
    dest: SiteView,
    dest_before: VMState,
    dest_incoming: bool,
) -> Cleanup:
    lines: list[str] = []
    for view in (source, dest):
        if view.state is None:
            lines.append(f"could not check {view.site}: {view.error}")
    if source.state == VMState.RUNNING:
        lines.append(f"{vm} still runs at {source.site}")
    elif source.state is not None:
        lines.append(f"WARNING: {vm} is {source.state} at {source.site}")
    there = dest.state
    if source.state != VMState.RUNNING:
        if there in (VMState.RUNNING, VMState.PAUSED):
            lines.append(f"{vm} is {there} at {dest.site}")
        return Cleanup("none", tuple(lines))
    if there in (VMState.SHUTOFF, VMState.CRASHED):
        if dest_before == VMState.UNDEFINED:
            lines.append(f"removing the inactive copy of {vm} the migration left at {dest.site}")
            return Cleanup("undefine_dest", tuple(lines))
        lines.append(f"the standby definition of {vm} at {dest.site} is kept ({there})")
    elif there == VMState.PAUSED and dest_incoming:
        lines.append(f"discarding the incoming copy of {vm} at {dest.site} (it never ran)")
        return Cleanup("destroy_dest_incoming", tuple(lines))
    elif there in (VMState.RUNNING, VMState.PAUSED):
        lines.append(f"WARNING: {vm} is {there} at {dest.site} too")
    return Cleanup("none", tuple(lines))
