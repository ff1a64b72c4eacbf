"""`drorch watchdog test`: arm, feed, measure the slack, disarm."""

from __future__ import annotations

import sys
from pathlib import Path

import click

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
    help="Time between feeds (default: a quarter of fencing.watchdog_timeout), e.g. 500ms.",
)
@format_option()
def test_cmd(config: Path, feeds: int, interval: str | None, fmt: str) -> None:
    """Arm the configured watchdog (fencing.watchdog), feed it FEEDS times, report the
    slack each feed left, and disarm it with the magic close."""
    from drorch.clock import SystemClock
    from drorch.fencing.devices import watchdog_for
    from drorch.fencing.selftest import run_selftest
    from drorch.fencing.watchdog import WatchdogError
    from drorch.model.units import parse_duration

    cluster = load_or_exit(config)
    timeout = cluster.fencing.watchdog_timeout
    try:
        every = parse_duration(interval) if interval is not None else timeout / 4
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--interval") from e
    device = watchdog_for(cluster.fencing)
    if not device.guarantees_deadline:
        click.echo(
            "drorch: error: fencing.watchdog is none: there is no watchdog to test", err=True
        )
        sys.exit(EXIT_FAILED)
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
