"""`drorch repl set-mode sync|async`: switch a running volume's replication mode (like
DRBD's `drbdadm net-options --protocol`), and the options that belong to one mode only,
shared with `repl serve` (which refuses those of the other mode).

async -> sync drains first: the command follows the drain with a progress bar and
returns once every write is acknowledged sync (RPO 0); sync -> async is at once. Exit
codes as the other `repl` commands: 1 failed or still draining at --timeout (the switch
goes on; status shows it), 2 bad options, 3 refused as unsafe.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from drorch.cli.exits import error_line
from drorch.cli.flags import byte_size, check_force, dry_run_option, duration, yes_option
from drorch.cli.output import format_option, render
from drorch.cli.repl_cmd import EXIT_FAILED, _call, _checked, control_option, repl

# option (as click names it) -> the only mode it means something in
MODE_ONLY = {
    "max_lag": "async",
    "on_congestion": "async",
    "fencing": "sync",
    "freeze_timeout": "sync",
    "fence_peer_cmd": "sync",
    "unfence_peer_cmd": "sync",
}
EXIT_USAGE = 2


def mode_only_options(f: Any) -> Any:
    """The options of one mode. No click defaults: whether one was given matters. The
    defaults the help states are the model's (PyreplOptions), which the engine uses."""
    from drorch.model.types import PyreplOptions
    from drorch.model.units import format_size

    model = PyreplOptions()
    for decorator in reversed(
        [
            click.option(
                "--max-lag",
                callback=byte_size,
                help="async: bound of the send queue (max_lag_bytes) "
                f"[default: {format_size(model.max_lag_bytes)}].",
            ),
            click.option(
                "--on-congestion",
                type=click.Choice(["block", "pull-ahead"]),
                help=f"async: what a full send queue does [default: {model.on_congestion}].",
            ),
            click.option(
                "--fencing",
                type=click.Choice(["resource-only", "dont-care"]),
                help="sync: resource-only (default) freezes I/O when the peer is lost until "
                "it is recorded Outdated; dont-care acknowledges alone (gives up RPO 0).",
            ),
            click.option(
                "--freeze-timeout",
                callback=duration,
                help="sync, resource-only: longest one write or flush is held frozen "
                "before EIO [default: 60s].",
            ),
            click.option(
                "--fence-peer-cmd", help="sync, resource-only: run while frozen (exit 0: outdated)."
            ),
            click.option(
                "--unfence-peer-cmd", help="sync, resource-only: run once the peer is UpToDate."
            ),
        ]
    ):
        f = decorator(f)
    return f


def mode_option_problems(mode: str, opts: Mapping[str, Any]) -> list[str]:
    """Every option given that does nothing in `mode`, in the operator's words."""
    problems = []
    for name, only in MODE_ONLY.items():
        if opts.get(name) is not None and only != mode:
            flag = "--" + name.replace("_", "-")
            problems.append(
                f"{flag} applies to {only} mode only, and this volume replicates {mode}: "
                f"drop it (to change mode later: `drorch repl set-mode {only} {flag} ...`)"
            )
    return problems


def engine_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    """Click's names -> the engine's (EngineConfig fields); None where not given."""
    return {
        "max_lag_bytes": opts.get("max_lag"),
        "on_congestion": opts.get("on_congestion"),
        "fencing": opts.get("fencing"),
        "freeze_timeout": opts.get("freeze_timeout"),
        "fence_peer_cmd": opts.get("fence_peer_cmd"),
        "unfence_peer_cmd": opts.get("unfence_peer_cmd"),
    }


@repl.command("set-mode")
@click.argument("mode", type=click.Choice(["sync", "async"]))
@control_option
@mode_only_options
@click.option("--force", is_flag=True, help="With --accept-data-loss: switch a frozen primary.")
@click.option("--accept-data-loss", is_flag=True, help="Acknowledge that it may lose data.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="async -> sync: follow the drain to its end with a progress bar.",
)
@click.option("--timeout", default="30m", callback=duration, show_default=True)
@format_option()
@dry_run_option
@yes_option
def set_mode(
    mode: str,
    control: Path,
    wait: bool,
    timeout: float,
    fmt: str,
    dry_run: bool,
    yes: bool,
    **opts: Any,
) -> None:
    """Replicate MODE (sync|async) from now on, without a restart.

    sync -> async is at once. async -> sync first drains the writes the peer lacks and
    acknowledges nothing as sync (RPO 0) before the peer holds all of them. The mode
    survives a restart (it overrides --mode until switched again). Run it on the
    primary: the secondary follows over the link. It asks first unless --yes; --dry-run
    reports the same refusals and what it would do."""
    force, accept = opts.pop("force"), opts.pop("accept_data_loss")
    check_force(force, accept)
    problems = mode_option_problems(mode, opts)
    if problems:
        for problem in problems:
            click.echo(error_line(problem), err=True)
        sys.exit(EXIT_USAGE)
    args = {k: v for k, v in engine_options(opts).items() if v is not None}
    if not _checked(control, "set_mode", fmt, dry_run, yes, mode=mode, accept_data_loss=accept,
                    **args):  # fmt: skip
        return
    result = _call(control, "set_mode", fmt, mode=mode, accept_data_loss=accept, **args)
    if wait and result.get("mode_switch"):
        result = _follow(control, result, timeout, fmt)
    render(result, fmt)


def _follow(control: Path, result: dict[str, Any], timeout: float, fmt: str) -> dict[str, Any]:
    """Draw the drain (bytes the peer still lacks) until the switch finished."""
    from drorch.cli.progress import ProgressBar
    from drorch.clock import SystemClock
    from drorch.wait import wait_until

    clock = SystemClock()
    total = int(result["mode_switch"].get("backlog_bytes_at_start") or 0)
    bar = ProgressBar("drain to sync", max(total, 1))
    last: dict[str, Any] = {}

    def switched() -> bool:
        st = last["st"] = _call(control, "status", fmt)
        extra = st.get("extra") or {}
        sw = extra.get("mode_switch")
        if not sw:
            return True
        left = int(st.get("lag_bytes") or 0) + int(st.get("out_of_sync_bytes") or 0)
        bar.update(max(total - left, 0), f"{left} B to go; waiting for {sw.get('waiting_for')}")
        return False

    if not wait_until(clock, switched, clock.monotonic() + timeout, interval=0.2):
        sw = (last["st"].get("extra") or {}).get("mode_switch") or {}
        click.echo(
            error_line(
                f"still draining after {timeout:g} s, waiting for {sw.get('waiting_for')}; the "
                "switch goes on (`drorch repl status` shows it)"
            ),
            err=True,
        )
        sys.exit(EXIT_FAILED)
    extra = last["st"].get("extra") or {}
    done = extra.get("mode_last_switch") or {}
    if done.get("confirmed") is False:  # the link went between the flip and the peer's ack
        bar.finish("sync, unconfirmed")
        click.echo(
            error_line(f"sync from now on, but not drained: {done.get('finished')}"), err=True
        )
        sys.exit(EXIT_FAILED)
    bar.finish(f"sync after {done.get('seconds', '?')} s")
    return {
        "message": "switched to sync",
        "mode": last["st"]["mode"],
        "mode_last_switch": done,
    }
