"""`drorch watchdog test`: arm, feed, measure the slack, disarm."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from drorch.cli.flags import confirm_or_stop, dry_run_option, duration, yes_option
from drorch.cli.loading import config_option, load_or_exit
from drorch.cli.output import format_option, render

EXIT_FAILED = 1


@click.group()
def watchdog() -> None:
    """The self-fence watchdog of this node."""


@watchdog.command("test")
@config_option
@click.option("--feeds", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option(
    "--interval",
    default=None,
    callback=duration,
    help="Time between feeds (default: a quarter of fencing.watchdog_timeout), e.g. 500ms.",
)
@format_option()
@dry_run_option
@yes_option
def test_cmd(
    config: Path, feeds: int, interval: float | None, fmt: str, dry_run: bool, yes: bool
) -> None:
    """Arm the configured watchdog (fencing.watchdog), feed it FEEDS times, report the
    slack each feed left, and disarm it with the magic close. Armed, it fences this node
    if the test stalls (soft: the self-fence stops its guests; device: a reset), so it
    asks first unless --yes; --dry-run checks the same and arms nothing."""
    from drorch.clock import SystemClock
    from drorch.fencing.devices import watchdog_for
    from drorch.fencing.selftest import run_selftest
    from drorch.fencing.watchdog import WatchdogError

    cluster = load_or_exit(config)
    timeout = cluster.fencing.watchdog_timeout
    every = interval if interval is not None else timeout / 4
    device = watchdog_for(cluster.fencing)
    if not device.guarantees_deadline:
        click.echo(
            "drorch: error: fencing.watchdog is none: there is no watchdog to test", err=True
        )
        sys.exit(EXIT_FAILED)
    if every >= timeout:  # run_selftest refuses it too; a dry run says the same
        click.echo(
            f"drorch: error: a feed interval of {every:g}s would let the {timeout:g}s watchdog"
            " fire",
            err=True,
        )
        sys.exit(EXIT_FAILED)
    what = (
        f"arm the {cluster.fencing.watchdog.value} watchdog for {timeout:g}s and feed it"
        f" {feeds} times every {every:g}s (if this stalls, it fences this node)"
    )
    if dry_run:
        click.echo(f"would {what}")
        return
    confirm_or_stop(yes, f"{what[0].upper()}{what[1:]}?")
    try:
        result = run_selftest(device, timeout, feeds=feeds, interval=every, clock=SystemClock())
    except WatchdogError as e:
        click.echo(f"drorch: error: {e}", err=True)
        sys.exit(EXIT_FAILED)
    data = result.as_dict()
    data.pop("last_feed_at", None)
    if fmt == "table":
        data["warnings"] = "; ".join(result.warnings) or None
    render(data, fmt)
    if result.warnings:
        sys.exit(EXIT_FAILED)
