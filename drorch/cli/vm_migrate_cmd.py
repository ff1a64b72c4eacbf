"""`drorch vm migrate` (live, with a progress bar) and `drorch vm failover-start` (cold)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from drorch.cli.exits import ExitCode, error_line
from drorch.cli.flags import (
    check_force,
    confirm_or_stop,
    dry_run_option,
    duration,
    force_options,
    yes_option,
)
from drorch.cli.loading import config_option
from drorch.cli.output import format_option, render
from drorch.cli.progress import ProgressBar
from drorch.cli.vm_common import cluster_vms
from drorch.virt.base import MigrationProgress
from drorch.virt.cluster_vms import MigrationReport, migration_options
from drorch.virt.failover_checks import Refusal
from drorch.virt.migration_text import progress_detail as _progress_detail

MIB = 2**20


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
    sim = " (simulated)" if report.simulated else ""
    return f"{how} after {r.total_seconds:.1f} s{downtime}{sim}"


@click.command("migrate")
@click.argument("name")
@click.option("--to", "to", required=True, help="The site to move the VM to.")
@config_option
@click.option("--deadline", callback=duration, help="Give up (or post-copy) after, e.g. 5m.")
@click.option(
    "--allow-postcopy/--no-postcopy",
    default=None,
    help="Switch to post-copy when the deadline nears (default: the config's policy).",
)
@click.option("--bandwidth", type=click.IntRange(min=1), help="Limit, in MiB/s.")
@click.option("--max-downtime", callback=duration, help="Starting max downtime, e.g. 300ms.")
@click.option(
    "--adaptive/--no-adaptive",
    default=None,
    help="Raise the max downtime step by step when the migration stalls (default on).",
)
@force_options("Override a forceable refusal (a volume at --to that cannot be asked).")
@dry_run_option
@yes_option
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
    force: bool,
    accept_data_loss: bool,
    dry_run: bool,
    yes: bool,
    fmt: str,
) -> None:
    """Live-migrate VM NAME to site --to, converging before the deadline.

    The VM keeps running at its source if the migration cannot finish in time. Refused
    (exit 3) for a VM that is not migratable or not running, and while a volume of it is
    not primary at --to (secondary: no dual-primary hand-over is open; `drorch migrate
    --to SITE` opens one). Only a volume that cannot be asked is forceable, with --force
    --accept-data-loss. A dry run reports the same refusals."""
    check_force(force, accept_data_loss)
    with cluster_vms(config) as vms:
        model, source, to = vms.check_migrate(name, to)
        refusals = vms.migrate_refusals(name, to)
        blocking = [r for r in refusals if not (r.forceable and force)]
        options = migration_options(
            vms.cluster.migration,
            deadline=deadline,
            allow_postcopy=allow_postcopy,
            bandwidth_mibps=bandwidth,
            max_downtime=max_downtime,
            adaptive=adaptive,
        )
        if dry_run or blocking:
            render(
                {
                    "vm": model.name,
                    "domain": model.domain,
                    "from": source,
                    "to": to,
                    "migratable": model.migratable,
                    "refused": _refused(blocking, fmt),
                    "would_migrate": not blocking,
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
            _refuse(blocking)
            return
        confirm_or_stop(yes, f"Live-migrate {model.name} from site {source} to site {to}?")
        bar = MigrationBar(f"migrate {name} → {to}")
        report = vms.migrate(name, to, options, bar, force=force)
        bar.finish(report.ok, _summary(report))
        render(report.as_dict(), fmt)
        if not report.ok:
            sys.exit(1)


@click.command("failover-start")
@click.argument("name")
@click.option("--to", "to", required=True, help="The site to start the VM at.")
@config_option
@click.option(
    "--xml",
    "xml_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Saved domain XML (default: the config's `xml`, else the other site's definition).",
)
@force_options("Override a forceable refusal (a site that cannot confirm the VM is stopped).")
@dry_run_option
@yes_option
@format_option()
def failover_start_cmd(
    name: str,
    to: str,
    config: Path,
    xml_file: Path | None,
    force: bool,
    accept_data_loss: bool,
    dry_run: bool,
    yes: bool,
    fmt: str,
) -> None:
    """Cold failover: define VM NAME at site --to from saved XML and start it.

    Refused (exit 3) while the VM runs at another site, while a volume of it is not
    primary at --to, or while another site cannot confirm it is stopped (that one only is
    forceable, with --force --accept-data-loss). A dry run reports the same refusals."""
    from drorch.virt.failover_checks import failover_refusals

    check_force(force, accept_data_loss)
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
                    "refused": _refused(blocking, fmt),
                    "would_start": not blocking,
                },
                fmt,
            )
            _refuse(blocking)
            return
        forced = " FORCED: a site could not confirm it is stopped" if refusals else ""
        confirm_or_stop(yes, f"Cold-start {model.name} at site {to} from {source}{forced}?")
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


def _refused(blocking: list[Refusal], fmt: str) -> list[dict[str, object]] | str | None:
    """The refusals as records for json/yaml, one `code: message` cell for the table."""
    if fmt != "table":
        return [r.as_dict() for r in blocking]
    return "; ".join(f"{r.code}: {r.message}" for r in blocking) or None


def _refuse(blocking: list[Refusal]) -> None:
    """One `drorch: error: refused: CODE: message` line each, then exit 3; if any."""
    for r in blocking:
        click.echo(error_line(f"refused: {r.code}: {r.message}"), err=True)
    if blocking:
        sys.exit(ExitCode.REFUSED)


def _names(names: tuple[str, ...], fmt: str) -> list[str] | str | None:
    """Lists for json/yaml; one cell for the table."""
    if fmt != "table":
        return list(names)
    return ", ".join(names) or None
