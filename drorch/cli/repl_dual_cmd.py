"""`drorch repl allow-two-primaries | forbid-two-primaries`: the per-daemon switch for a
live hand-over (pyrepl/dual.py). Allowing is refused unless the volume replicates sync,
is Connected and both disks are UpToDate; the peer records the change too. Forbidding
is refused while both sides are primary. Exit codes as the other `repl` commands (1
refused or failed)."""

from __future__ import annotations

from pathlib import Path

from drorch.cli.flags import dry_run_option, yes_option
from drorch.cli.output import format_option, render
from drorch.cli.repl_cmd import _call, _checked, control_option, repl


@repl.command("allow-two-primaries")
@control_option
@format_option()
@dry_run_option
@yes_option
def allow_two_primaries(control: Path, fmt: str, dry_run: bool, yes: bool) -> None:
    """Let the peer be promoted beside this side's primary (sync, in sync only). It asks
    first unless --yes; --dry-run reports the same refusals and changes nothing."""
    if _checked(control, "allow_two_primaries", fmt, dry_run, yes):
        render(_call(control, "allow_two_primaries", fmt), fmt)


@repl.command("forbid-two-primaries")
@control_option
@format_option()
def forbid_two_primaries(control: Path, fmt: str) -> None:
    """Refuse a second primary again (refused while both sides are primary)."""
    render(_call(control, "forbid_two_primaries", fmt), fmt)
