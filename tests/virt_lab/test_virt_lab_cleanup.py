"""What the libvirt driver tidies after a failed migration, and what it only reports."""

from __future__ import annotations

import pytest

from drorch.virt.base import VMState
from drorch.virt.libvirt_cleanup import SiteView, after_failed_migration

R, P, S, U = VMState.RUNNING, VMState.PAUSED, VMState.SHUTOFF, VMState.UNDEFINED


@pytest.mark.parametrize(
    ("here", "there", "before", "incoming", "action", "says"),
    [
        (R, U, U, False, "none", "vm still runs at A"),
        (R, S, U, False, "undefine_dest",
         "removing the inactive copy of vm the migration left at B"),
        (R, S, S, False, "none", "the standby definition of vm at B is kept (shutoff)"),
        (R, P, U, True, "destroy_dest_incoming",
         "discarding the incoming copy of vm at B (it never ran)"),
        (R, P, U, False, "none", "WARNING: vm is paused at B too"),
        (R, R, U, False, "none", "WARNING: vm is running at B too"),
        (P, P, U, True, "none", "WARNING: vm is paused at A"),  # a person decides
        (S, R, U, False, "none", "vm is running at B"),
        (None, S, U, False, "none", "could not check A: connection closed"),
    ],
)  # fmt: skip
def test_after_failed_migration(
    here: VMState | None,
    there: VMState,
    before: VMState,
    incoming: bool,
    action: str,
    says: str,
) -> None:
    source = SiteView("A", here, "" if here else "connection closed")
    got = after_failed_migration("vm", source, SiteView("B", there), before, incoming)
    assert got.action == action
    assert says in got.lines


def test_an_unreachable_destination_is_reported_and_left_alone() -> None:
    got = after_failed_migration(
        "vm", SiteView("A", R), SiteView("B", None, "keepalive timeout"), U, False
    )
    assert got.action == "none"
    assert got.lines == ("could not check B: keepalive timeout", "vm still runs at A")
