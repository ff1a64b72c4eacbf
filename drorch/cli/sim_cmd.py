"""`drorch sim ...`: change the simulated world to rehearse a disaster without root."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from drorch.cli.exits import ExitCode
from drorch.cli.loading import cluster_environment, config_option


def _apply(config: Path, act: Callable[..., object]) -> object:
    from drorch.virt.sim_world import SimFaultError, SimUsageError

    with cluster_environment(config) as loaded:
        try:
            return act(loaded.cluster, loaded.env)
        except SimFaultError as e:
            click.echo(f"drorch: error: {e}", err=True)
            usage = isinstance(e, SimUsageError)
            sys.exit(ExitCode.USAGE if usage else ExitCode.FAILED)


@click.group()
def sim() -> None:
    """Faults for the simulated lab (hypervisor.driver: sim): power, network, witness,
    replication and guests. `drorch status` and the plans then see what real drivers
    would report."""


@sim.command("power-off")
@click.argument("site")
@config_option
def power_off_cmd(site: str, config: Path) -> None:
    """Lose SITE: its VMs stop, it answers nothing, its peers lose their replicas."""
    from drorch.virt.sim_world import power_off

    stopped = _apply(config, lambda c, e: power_off(c, e, site))
    click.echo(f"site {site} powered off; stopped: {', '.join(stopped) or 'nothing'}")  # type: ignore[arg-type]


@sim.command("power-on")
@click.argument("site")
@config_option
def power_on_cmd(site: str, config: Path) -> None:
    """SITE is back: its VMs stay off, its replicas come back Secondary and reconnect."""
    from drorch.virt.sim_world import power_on

    _apply(config, lambda c, e: power_on(c, e, site))
    click.echo(f"site {site} powered on (VMs off, replicas secondary)")


@sim.command()
@config_option
def partition(config: Path) -> None:
    """Cut the link between the sites (both still reachable from here)."""
    from drorch.virt.sim_world import set_marker

    _apply(config, lambda c, e: set_marker(c, e, "sim-partition", True))
    click.echo("the sites are partitioned")


@sim.command()
@config_option
def heal(config: Path) -> None:
    """Restore the link between the sites."""
    from drorch.virt.sim_world import set_marker

    _apply(config, lambda c, e: set_marker(c, e, "sim-partition", False))
    click.echo("the link between the sites is back")


@sim.command("kill-witness")
@config_option
def kill_witness_cmd(config: Path) -> None:
    """The witness answers nobody: no lost site can be confirmed fenced."""
    from drorch.virt.sim_world import set_marker

    _apply(config, lambda c, e: set_marker(c, e, "sim-witness.down", True))
    click.echo("the witness is down")


@sim.command("revive-witness")
@config_option
def revive_witness_cmd(config: Path) -> None:
    """The witness answers again."""
    from drorch.virt.sim_world import set_marker

    _apply(config, lambda c, e: set_marker(c, e, "sim-witness.down", False))
    click.echo("the witness is back")


@sim.command("break-replication")
@click.argument("volume")
@config_option
def break_replication_cmd(volume: str, config: Path) -> None:
    """Disconnect VOLUME on both sides (StandAlone until `drorch repl connect`)."""
    from drorch.virt.sim_world import break_replication

    _apply(config, lambda c, e: break_replication(c, e, volume))
    click.echo(f"replication of {volume} is broken (StandAlone)")


@sim.command("crash-vm")
@click.argument("vm")
@click.option(
    "--state",
    type=click.Choice(["crashed", "shutoff"]),
    default="crashed",
    show_default=True,
    help="What it dies to: libvirt's `crashed`, or `shutoff` (its default on_crash).",
)
@config_option
def crash_vm_cmd(vm: str, state: str, config: Path) -> None:
    """VM crashes where it runs (libvirt's `crashed`, or `shutoff` with --state)."""
    from drorch.model.states import VMState
    from drorch.virt.sim_world import crash_vm

    site = _apply(config, lambda c, e: crash_vm(c, e, vm, VMState(state)))
    click.echo(f"{vm} {state} at site {site}")
