"""`drorch vm`: list the cluster's VMs per site, live-migrate, cold-start, start/stop.

Exit status: 0 done; 1 the operation failed or was refused (nothing unsafe was done);
2 bad usage or a bad config file (`file:line:col: message` on stderr).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from drorch.cli.loading import config_option, load_or_exit
from drorch.cli.output import format_option, render
from drorch.cli.progress import ProgressBar
from drorch.virt.base import HypervisorError, MigrationProgress
from drorch.virt.cluster_vms import (
    ClusterVMs,
    MigrationReport,
    VMOperationRefused,
    migration_options,
)

MIB = 2**20


def _duration(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    from drorch.model.units import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None
    if seconds <= 0:
        raise click.BadParameter("must be positive", param=param)
    return seconds


@contextmanager
def cluster_vms(config: Path) -> Iterator[ClusterVMs]:
    """Load the model and build the environment; config errors exit 2."""
    from drorch.envbuild import build_environment_report

    cluster = load_or_exit(config)
    env, problems = build_environment_report(cluster, config.resolve().parent)
    unavailable = {
        p.what.removeprefix("hypervisor "): p.message
        for p in problems
        if p.what.startswith("hypervisor ")
    }
    try:
        yield ClusterVMs(cluster, env, unavailable)
    except (VMOperationRefused, HypervisorError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        env.close()


EXIT_REFUSED = 3


@click.group("vm")
def vm() -> None:
    """The cluster's VMs: where they run, live migration and cold failover."""


@vm.command("list")
@config_option
@format_option()
def list_cmd(config: Path, fmt: str) -> None:
    """Each VM and its state at every site."""
    with cluster_vms(config) as vms:
        render(vms.table(), fmt)


def _progress_detail(p: MigrationProgress) -> str:
    parts = [
        f"iter {p.iteration}",
        f"sent {p.data_processed / MIB:.0f} MiB",
        f"left {p.data_remaining / MIB:.0f} MiB",
        f"dirty {p.dirty_rate / MIB:.0f} MiB/s",
        f"downtime {p.expected_downtime_ms}/{p.max_downtime_ms} ms",
    ]
    if p.auto_converge:
        parts.append("auto-converge")
    if p.postcopy:
        parts.append("post-copy")
    return "  ".join(parts)


class MigrationBar:
    """Feeds a ProgressBar from migration samples: done = total - remaining."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: ProgressBar | None = None
        self.samples = 0
        self.done = 0
        self.mode: tuple[int, bool, bool] | None = None

    def __call__(self, p: MigrationProgress) -> None:
        if self.bar is None:
            self.bar = ProgressBar(self.label, p.data_total, min_interval=0.5)
        self.bar.total = max(p.data_total, 1)  # libvirt may report 0 before the job sizes up
        # A change of strategy is always shown, even when lines are rate-limited.
        mode = (p.max_downtime_ms, p.auto_converge, p.postcopy)
        changed = self.samples > 0 and mode != self.mode
        self.samples += 1
        self.mode = mode
        self.done = p.data_total - p.data_remaining
        self.bar.update(self.done, _progress_detail(p), force=changed)

    def finish(self, ok: bool, summary: str) -> None:
        if self.bar is None:
            return
        if ok:
            self.bar.finish(f"done: {summary}")
            return
        self.bar.update(
            self.done, f"aborted: {summary}", force=True
        )  # not 100 %: it did not finish
        if self.bar.stream.isatty():
            self.bar.stream.write("\n")
            self.bar.stream.flush()


def _summary(report: MigrationReport) -> str:
    r = report.result
    if r is None:
        return "no migration job"
    how = "post-copy" if r.postcopy else "converged" if r.converged else "did not converge"
    downtime = f", downtime {r.downtime_ms} ms" if r.downtime_ms is not None else ""
    return f"{how} after {r.total_seconds:.1f} s{downtime}"


@vm.command("migrate")
@click.argument("name")
@click.option("--to", "to", required=True, help="The site to move the VM to.")
@config_option
@click.option("--deadline", callback=_duration, help="Give up (or post-copy) after, e.g. 5m.")
@click.option(
    "--allow-postcopy/--no-postcopy",
    default=None,
    help="Switch to post-copy when the deadline nears (default: the config's policy).",
)
@click.option("--bandwidth", type=click.IntRange(min=1), help="Limit, in MiB/s.")
@click.option("--max-downtime", callback=_duration, help="Starting max downtime, e.g. 300ms.")
@click.option(
    "--adaptive/--no-adaptive",
    default=None,
    help="Raise the max downtime step by step when the migration stalls (default on).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be done and the options.")
@format_option()
def migrate_cmd(
    name: str,
    to: str,
    config: Path,
    deadline: float | None,
    allow_postcopy: bool | None,
    bandwidth: int | None,
    max_downtime: float | None,
    adaptive: bool | None,
    dry_run: bool,
    fmt: str,
) -> None:
    """Live-migrate VM NAME to site --to, converging before the deadline.

    The VM keeps running at its source if the migration cannot finish in time."""
    with cluster_vms(config) as vms:
        options = migration_options(
            vms.cluster.migration,
            deadline=deadline,
            allow_postcopy=allow_postcopy,
            bandwidth_mibps=bandwidth,
            max_downtime=max_downtime,
            adaptive=adaptive,
        )
        if dry_run:
            model = vms.vm(name)
            render(
                {
                    "vm": model.name,
                    "domain": model.domain,
                    "from": vms.running_at(model.domain),
                    "to": to,
                    "migratable": model.migratable,
                    "max_downtime_ms": round(options.max_downtime * 1000),
                    "downtime_ceiling_ms": round(options.downtime_ceiling * 1000),
                    "adaptive": options.adaptive,
                    "auto_converge": options.auto_converge,
                    "allow_postcopy": options.allow_postcopy,
                    "bandwidth_mibps": options.bandwidth_mibps or "unlimited",
                    "deadline_seconds": options.deadline,
                },
                fmt,
            )
            return
        bar = MigrationBar(f"migrate {name} → {to}")
        report = vms.migrate(name, to, options, bar)
        bar.finish(report.ok, _summary(report))
        render(report.as_dict(), fmt)
        if not report.ok:
            sys.exit(1)


@vm.command("failover-start")
@click.argument("name")
@click.option("--to", "to", required=True, help="The site to start the VM at.")
@config_option
@click.option(
    "--xml",
    "xml_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Saved domain XML (default: the config's `xml`, else the other site's definition).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Override a forceable refusal (a site that cannot confirm the VM is stopped).",
)
@click.option(
    "--accept-data-loss", is_flag=True, help="Acknowledge that forcing may lose or corrupt data."
)
@click.option("--dry-run", is_flag=True, help="Check and show the XML source; start nothing.")
@format_option()
def failover_start_cmd(
    name: str,
    to: str,
    config: Path,
    xml_file: Path | None,
    force: bool,
    accept_data_loss: bool,
    dry_run: bool,
    fmt: str,
) -> None:
    """Cold failover: define VM NAME at site --to from saved XML and start it.

    Refused (exit 3) while the VM runs at another site, while a volume of it is not
    primary at --to, or while another site cannot confirm it is stopped (that one only is
    forceable, with --force --accept-data-loss). A dry run reports the same refusals."""
    from drorch.virt.failover_checks import failover_refusals

    if force != accept_data_loss:
        raise click.UsageError("--force needs --accept-data-loss (and the other way round)")
    with cluster_vms(config) as vms:
        model = vms.vm(name)
        to = vms.site_name(to)
        states = vms.states(model.domain)
        refusals = failover_refusals(vms.cluster, vms.env, model, to, states)
        blocking = [r for r in refusals if not (r.forceable and force)]
        xml, source = vms.saved_xml(name, to, xml_file)
        if dry_run or blocking:
            render(
                {
                    "vm": model.name,
                    "to": to,
                    "xml_from": source,
                    **{site: str(state) for site, state in states.items()},
                    "refused": [r.as_dict() for r in blocking]
                    if fmt != "table"
                    else "; ".join(f"{r.code}: {r.message}" for r in blocking) or None,
                    "would_start": not blocking,
                },
                fmt,
            )
            for r in blocking:
                click.echo(f"drorch: error: refused: {r.code}: {r.message}", err=True)
            if blocking:
                sys.exit(EXIT_REFUSED)
            return
        result = vms.failover_start(name, to, xml, force_unreachable=force)
        render(
            {
                "vm": name,
                "domain": result.vm,
                "site": result.site,
                "xml_from": source,
                "checked_sites": _names(result.checked_sites, fmt),
                "unreachable_sites": _names(result.unreachable_sites, fmt),
                "reason": result.reason,
            },
            fmt,
        )


def _names(names: tuple[str, ...], fmt: str) -> list[str] | str | None:
    """Lists for json/yaml; one cell for the table."""
    if fmt != "table":
        return list(names)
    return ", ".join(names) or None


@vm.command("start")
@click.argument("name")
@click.option("--site", required=True)
@config_option
def start_cmd(name: str, site: str, config: Path) -> None:
    """Start VM NAME at --site (refused while it runs at another site)."""
    with cluster_vms(config) as vms:
        vms.start(name, site)
        click.echo(f"{name}: running at site {site}")


@vm.command("shutdown")
@click.argument("name")
@click.option("--site", required=True)
@config_option
@click.option(
    "--timeout",
    default="60s",
    show_default=True,
    callback=_duration,
    help="Destroy the VM if the guest has not shut down by then.",
)
def shutdown_cmd(name: str, site: str, config: Path, timeout: float) -> None:
    """Shut VM NAME down gracefully at --site; destroy it after --timeout."""
    with cluster_vms(config) as vms:
        click.echo(f"shutting {name} down at site {site} (destroyed after {timeout:g} s)", err=True)
        result = vms.shutdown(name, site, timeout)
        how = "shut down gracefully" if result.graceful else "destroyed after the timeout"
        click.echo(f"{name}: {how} at site {site} ({result.seconds:.1f} s)")


@vm.command("destroy")
@click.argument("name")
@click.option("--site", required=True)
@config_option
@click.option("--yes", is_flag=True, help="Do not ask: power the VM off at once.")
def destroy_cmd(name: str, site: str, config: Path, yes: bool) -> None:
    """Power VM NAME off at once at --site (like pulling the plug)."""
    with cluster_vms(config) as vms:
        state = vms.states(vms.vm(name).domain).get(site)
        if state is None:
            raise VMOperationRefused(f"no site {site!r}")
        question = f"Power off {name} at site {site} ({state}) without shutdown?"
        if not yes and not click.confirm(question):
            raise click.ClickException("not confirmed; nothing done")
        vms.destroy(name, site)
        click.echo(f"{name}: powered off at site {site}")


@vm.command("heartbeat")
@click.argument("name")
@config_option
@click.option("--monitor", "monitor_name", help="Which heartbeat monitor (default: the first).")
@click.option(
    "--after",
    type=click.IntRange(min=0),
    help="The last counter seen before a live migration: the guest must continue above it.",
)
@click.option("--timeout", default="30s", show_default=True, callback=_duration)
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
            raise VMOperationRefused(f"{model.name} has no heartbeat monitor {monitor_name or ''}")
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
