"""`drorch vm`: list the cluster's VMs per site, live-migrate, cold-start, start/stop.

Exit codes (`drorch.cli.exits`): 0 done (a dry run: would be done); 1 failed or not
confirmed; 2 bad usage, an unknown VM or site, or a bad config file; 3 refused as unsafe
(nothing was done). Destructive commands take `--dry-run` (the same checks, nothing
done) and `--yes` (do not ask).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from drorch.cli.flags import duration
from drorch.cli.loading import config_option
from drorch.cli.output import format_option, render
from drorch.cli.vm_common import cluster_vms
from drorch.cli.vm_migrate_cmd import failover_start_cmd, migrate_cmd
from drorch.cli.vm_power_cmd import destroy_cmd, shutdown_cmd, start_cmd
from drorch.cli.vm_xml_cmd import dumpxml_cmd, sync_xml_cmd
from drorch.virt.cluster_vms import UnknownName


@click.group("vm")
def vm() -> None:
    """The cluster's VMs: where they run, live migration and cold failover."""


for _command in (
    migrate_cmd,
    failover_start_cmd,
    start_cmd,
    shutdown_cmd,
    destroy_cmd,
    sync_xml_cmd,
    dumpxml_cmd,
):
    vm.add_command(_command)


@vm.command("list")
@config_option
@format_option()
def list_cmd(config: Path, fmt: str) -> None:
    """Each VM and its state at every site."""
    with cluster_vms(config) as vms:
        render(vms.table(), fmt)


@vm.command("heartbeat")
@click.argument("name")
@config_option
@click.option("--monitor", "monitor_name", help="Which heartbeat monitor (default: the first).")
@click.option(
    "--after",
    type=click.IntRange(min=0),
    help="The last counter seen before a live migration: the guest must continue above it.",
)
@click.option("--timeout", default="30s", show_default=True, callback=duration)
@format_option()
def heartbeat_cmd(
    name: str, config: Path, monitor_name: str | None, after: int | None, timeout: float, fmt: str
) -> None:
    """Is VM NAME's application still beating? Follows its type-3 heartbeat monitor's
    serial log until the counter is seen rising, or --timeout. Exit 1 if not."""
    from drorch.model.types import MonitorType
    from drorch.monitor.heartbeat import policy_for
    from drorch.monitor.serial_log import HeartbeatMonitor

    with cluster_vms(config) as vms:
        model = vms.vm(name)
        monitors = [m for m in model.monitors if m.type is MonitorType.HEARTBEAT]
        if monitor_name is not None:
            monitors = [m for m in monitors if m.name == monitor_name]
        if not monitors:
            raise UnknownName(f"{model.name} has no heartbeat monitor {monitor_name or ''}")
        monitor = monitors[0]
        log = Path(vms.env.base_dir) / monitor.target
        policy = policy_for(monitor.interval)
        click.echo(
            f"following {log} for up to {timeout:g} s: {policy.min_beats} rising beats "
            f"within {policy.window:g} s",
            err=True,
        )
        with HeartbeatMonitor(
            log, vms.env.clock, policy, baseline=after, expect_continuation=after is not None
        ) as watcher:
            verdict = watcher.wait_until_rising(timeout, interval=min(0.5, policy.window / 4))
        render(
            {
                "vm": model.name,
                "monitor": monitor.name,
                "log": str(log),
                "status": verdict.status.value,
                "last_n": verdict.last_n,
                "beats_in_window": verdict.beats_in_window,
                "reason": verdict.reason,
            },
            fmt,
        )
        if not verdict.healthy:
            sys.exit(1)
