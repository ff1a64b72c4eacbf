"""`drorch vm start|shutdown|destroy`: destructive, so each takes --dry-run (the same
checks, nothing done) and --yes (do not ask)."""

from __future__ import annotations

from pathlib import Path

import click

from drorch.cli.flags import confirm_or_stop, dry_run_option, duration, yes_option
from drorch.cli.loading import config_option
from drorch.cli.vm_common import cluster_vms


@click.command("start")
@click.argument("name")
@click.option("--site", required=True)
@config_option
@dry_run_option
@yes_option
def start_cmd(name: str, site: str, config: Path, dry_run: bool, yes: bool) -> None:
    """Start VM NAME at --site. Refused (exit 3) while it runs at another site, while
    another site cannot say whether it does, or while a volume of it is not primary at
    --site (volume-not-primary)."""
    with cluster_vms(config) as vms:
        model, site, state = vms.check_start(name, site)
        if dry_run:
            click.echo(f"would start {model.name} at site {site} (now {state})")
            return
        confirm_or_stop(yes, f"Start {model.name} at site {site} (now {state})?")
        vms.start(name, site)
        click.echo(f"{model.name}: running at site {site}")


@click.command("shutdown")
@click.argument("name")
@click.option("--site", required=True)
@config_option
@click.option(
    "--timeout",
    default="60s",
    show_default=True,
    callback=duration,
    help="Destroy the VM if the guest has not shut down by then, e.g. 90s.",
)
@dry_run_option
@yes_option
def shutdown_cmd(
    name: str, site: str, config: Path, timeout: float, dry_run: bool, yes: bool
) -> None:
    """Shut VM NAME down gracefully at --site; destroy it after --timeout."""
    with cluster_vms(config) as vms:
        model, site, state = vms.check_site_state(name, site)
        what = f"shut {model.name} down at site {site} (now {state}; destroyed after {timeout:g} s)"
        if dry_run:
            click.echo(f"would {what}")
            return
        confirm_or_stop(yes, f"{what[0].upper()}{what[1:]}?")
        click.echo(f"{what[0].upper()}{what[1:]}", err=True)
        result = vms.shutdown(name, site, timeout)
        how = "shut down gracefully" if result.graceful else "destroyed after the timeout"
        click.echo(f"{model.name}: {how} at site {site} ({result.seconds:.1f} s)")


@click.command("destroy")
@click.argument("name")
@click.option("--site", required=True)
@config_option
@dry_run_option
@yes_option
def destroy_cmd(name: str, site: str, config: Path, dry_run: bool, yes: bool) -> None:
    """Power VM NAME off at once at --site (like pulling the plug)."""
    with cluster_vms(config) as vms:
        model, site, state = vms.check_site_state(name, site)
        if dry_run:
            click.echo(f"would power off {model.name} at site {site} (now {state})")
            return
        confirm_or_stop(yes, f"Power off {model.name} at site {site} ({state}) without shutdown?")
        vms.destroy(name, site)
        click.echo(f"{model.name}: powered off at site {site}")
