"""`drorch config validate|show`: check a cluster file, print its normalised model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from drorch.cli.loading import EXIT_CONFIG, config_option, load_or_exit
from drorch.cli.output import format_option, render
from drorch.model.units import format_duration, format_size


@click.group()
def config() -> None:
    """Check and show the cluster configuration."""


@config.command()
@config_option
@format_option()
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1).")
def validate(config: Path, fmt: str, strict: bool) -> None:
    """Print every problem as FILE:LINE:COL: CODE: message (on stdout), or `ok`.

    Exit 0 when valid, 2 on errors, 1 on warnings with --strict."""
    from drorch.model.loader import load_cluster_with_warnings
    from drorch.model.reports import ConfigError, ReportItem

    errors: list[ReportItem]
    try:
        _, warnings = load_cluster_with_warnings(config)
        errors = []
    except ConfigError as exc:
        errors = exc.errors
        warnings = [r for r in exc.reports if r not in errors]
    if fmt != "table":
        render(
            {
                "ok": not errors and not (strict and warnings),
                "errors": [_report(r) for r in errors],
                "warnings": [_report(r) for r in warnings],
            },
            fmt,
        )
    else:
        for report in sorted([*errors, *warnings], key=lambda r: (r.position, r.code)):
            click.echo(str(report))  # the report is this command's output
        if not errors and warnings and strict:
            click.echo(f"not ok: {len(warnings)} warning(s), and --strict makes warnings fail")
        elif not errors:
            click.echo("ok" if not warnings else f"ok ({len(warnings)} warning(s))")
    if errors:
        sys.exit(EXIT_CONFIG)
    if warnings and strict:
        sys.exit(1)


def _report(r: Any) -> dict[str, Any]:
    pos = r.position
    return {
        "file": pos.file if pos else None,
        "line": pos.line if pos else None,
        "col": pos.col if pos else None,
        "code": r.code,
        "severity": r.severity.value,
        "message": r.message,
    }


@config.command()
@config_option
@format_option()
def show(config: Path, fmt: str) -> None:
    """Print the normalised model (YAML output loads back to the same cluster)."""
    from drorch.model.dump import cluster_to_dict

    cluster = load_or_exit(config)
    if fmt != "table":
        render(cluster_to_dict(cluster), fmt)
        return
    q, f = cluster.quorum, cluster.fencing
    summary = {
        "cluster": cluster.name,
        "primary_site": cluster.primary_site,
        "distance_km": cluster.distance_km,
        "witness": cluster.witness.address if cluster.witness else None,
        "hypervisor": cluster.hypervisor.driver,
        "timings": (
            f"heartbeat {format_duration(q.heartbeat)}, lease_timeout"
            f" {format_duration(q.lease_timeout)}, switch_delay {format_duration(q.switch_delay)},"
            f" takeover_wait {format_duration(q.takeover_wait)}"
        ),
        "fencing": (
            f"{f.watchdog.value} watchdog {format_duration(f.watchdog_timeout)} + margin"
            f" {format_duration(f.margin)}, then {f.self_fence.value}"
        ),
        "nodes": [
            {"site": s.name, "node": n.name, "address": n.address, "libvirt_uri": n.libvirt_uri}
            for s in cluster.sites
            for n in s.nodes
        ],
        "volumes": [
            {
                "volume": v.name,
                "driver": v.driver.value,
                "mode": v.mode.value,
                "size": format_size(v.size),
                "port": v.port,
                "paths": dict(v.paths),
            }
            for v in cluster.volumes
        ],
        "vms": [
            {
                "vm": vm.name,
                "domain": vm.domain,
                "migratable": vm.migratable,
                "volumes": list(vm.volumes),
                "depends_on": list(vm.depends_on),
                "monitors": [m.name for m in vm.monitors],
            }
            for vm in cluster.vms
        ],
        "services": [
            {
                "service": s.name,
                "migratable": s.migratable,
                "depends_on": list(s.depends_on),
                "placement": dict(s.placement),
                "monitors": [m.name for m in s.monitors],
            }
            for s in cluster.services
        ],
        "drills": [
            {"drill": d.name, "kind": d.kind.value, "schedule": d.schedule, "target": d.target}
            for d in cluster.drills
        ],
    }
    render(summary, fmt)
