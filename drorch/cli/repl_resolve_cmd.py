"""`drorch repl resolve`: end a split brain by throwing away one side's changes.

Two forms:

- per daemon (pyrepl, low level): `--control SOCKET --discard-local [--wait/--no-wait]`
  on the side whose changes go;
- by site (any driver, from the cluster config): `-c CONFIG --volume VOL --discard SITE
  --accept-data-loss`. It asks both sides, refuses unless the volume is in split brain on
  SITE's node and that node is secondary, then discards SITE's changes, connects the
  other side and follows the resync (`--no-wait` returns at once). The logic is in
  `drorch.replication.resolve`; this module parses and renders.

Exit codes (as the other `repl` commands): 0 done; 1 refused or failed (no split brain,
SITE's node primary, a side unreachable, resync not finished within --resync-wait);
2 usage, config errors, unknown volume or site; 3 data loss not accepted (UnsafeOperation);
4 the survivor still sees a split brain; 5 stale fencing epoch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from drorch.cli.flags import confirm_or_stop, yes_option
from drorch.cli.loading import EXIT_CONFIG, load_or_exit
from drorch.cli.output import format_option, render
from drorch.cli.repl_cmd import EXIT_FAILED, EXIT_UNSAFE, _call, _fail, _wait_for_resync, repl
from drorch.replication.base import ReplicationError

if TYPE_CHECKING:
    from drorch.cli.progress import ProgressBar
    from drorch.model.types import Node
    from drorch.replication.base import ReplicationStatus, Replicator
    from drorch.replication.resolve import Observed, ResolveOutcome, ResolvePlan


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    from drorch.model.units import UnitError, parse_duration

    try:
        seconds = parse_duration(value)
    except UnitError as exc:
        raise click.BadParameter(str(exc)) from exc
    if seconds <= 0:
        raise click.BadParameter("must be positive")
    return seconds


@repl.command("resolve")
@click.option(
    "--control",
    type=click.Path(path_type=Path),
    help="Per-daemon form: the pyrepl daemon's control socket (with --discard-local).",
)
@click.option(
    "--discard-local",
    is_flag=True,
    help="Per-daemon form: throw away this daemon's changes and resync it from the peer.",
)
@click.option(
    "-c",
    "--config",
    "config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="By-site form: the cluster config (any volume driver).",
)
@click.option("--volume", help="By-site form: the volume in split brain.")
@click.option(
    "--discard",
    "discard_site",
    metavar="SITE",
    help="By-site form: the site whose changes are thrown away.",
)
@click.option("--accept-data-loss", is_flag=True, help="Acknowledge losing SITE's changes.")
@click.option("--dry-run", is_flag=True, help="By site: observe, decide, print; change nothing.")
@click.option(
    "--resync-wait",
    default="24h",
    show_default=True,
    metavar="DURATION",
    callback=_duration,
    help="By site: follow the resync at most this long (it goes on in the background).",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Follow the resync to its end with a progress bar.",
)
@yes_option
@format_option()
def resolve(
    control: Path | None,
    discard_local: bool,
    config: Path | None,
    volume: str | None,
    discard_site: str | None,
    accept_data_loss: bool,
    dry_run: bool,
    resync_wait: float,
    wait: bool,
    yes: bool,
    fmt: str,
) -> None:
    """Resolve a split brain: discard one side's changes and resync it from the other.

    \b
    drorch repl resolve -c CONFIG --volume VOL --discard SITE --accept-data-loss
    drorch repl resolve --control SOCKET --discard-local
    """
    by_site = config is not None or volume is not None or discard_site is not None
    if control is not None:
        if by_site or accept_data_loss or dry_run:
            raise click.UsageError(
                "--control (one daemon) and -c/--volume/--discard/--accept-data-loss/--dry-run"
                " (by site) are two forms of resolve; give one"
            )
        if not discard_local:
            raise click.UsageError("resolve needs --discard-local on the side whose data goes")
        confirm_or_stop(
            yes, f"Discard the changes of {control}'s side and resync it from the peer?"
        )
        result = _call(control, "resolve", fmt, discard_local=True)
        render(_wait_for_resync(control, result) if wait else result, fmt)
        return
    if discard_local:
        raise click.UsageError(
            "--discard-local goes with --control SOCKET; by site, name the site whose changes "
            "go with -c CONFIG --volume VOL --discard SITE"
        )
    if config is None or volume is None or discard_site is None:
        raise click.UsageError(
            "give -c CONFIG --volume VOL --discard SITE (by site, any driver), or "
            "--control SOCKET --discard-local (one pyrepl daemon)"
        )
    _resolve_by_site(
        config, volume, discard_site, accept_data_loss, dry_run, resync_wait, wait, fmt, yes
    )


def _resolve_by_site(
    config: Path,
    volume_name: str,
    discard_site: str,
    accept_data_loss: bool,
    dry_run: bool,
    resync_wait: float,
    wait: bool,
    fmt: str,
    yes: bool,
) -> None:
    from drorch.model.reports import Severity
    from drorch.replication.node_status import volume_environment, volume_replicator
    from drorch.replication.resolve import (
        UnknownTarget,
        carry_out,
        decide_resolve,
        observe,
        pick_sides,
    )

    cluster = load_or_exit(config)
    try:
        sides = pick_sides(cluster, volume_name, discard_site)
    except UnknownTarget as exc:
        click.echo(f"drorch: error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    env = volume_environment(cluster, sides.volume, config.resolve().parent)
    replicators: dict[str, Replicator] = {}

    def build(node: Node) -> Callable[[], Replicator]:
        def make() -> Replicator:
            replicators[node.name] = volume_replicator(cluster, sides.volume, node, env)
            return replicators[node.name]

        return make

    try:
        plan = decide_resolve(
            sides.volume.name,
            observe(sides.victim_site, sides.victim.name, build(sides.victim)),
            observe(sides.survivor_site, sides.survivor.name, build(sides.survivor)),
            accept_data_loss=accept_data_loss,
        )
        for report in plan.reports:
            blocking = report.severity is Severity.ERROR
            click.echo(f"drorch: error: {report}" if blocking else str(report), err=True)
        if dry_run or not plan.may_run:
            render(_plan_document(plan, fmt), fmt)
            if not plan.may_run:
                sys.exit(EXIT_UNSAFE if plan.only_data_loss else EXIT_FAILED)
            return
        confirm_or_stop(
            yes,
            f"Discard the changes to {sides.volume.name} at {discard_site} ({sides.victim.name})"
            f" and resync them from {sides.survivor.name}?",
        )
        click.echo(f"resolving: {plan.reason}", err=True)
        progress = _Progress(f"resync {sides.volume.name} on {sides.victim.name}")
        try:
            outcome = carry_out(
                plan,
                replicators[sides.victim.name],
                replicators[sides.survivor.name],
                clock=env.clock,
                resync_wait=resync_wait if wait else None,
                on_progress=progress.update,
            )
        except ReplicationError as exc:
            _fail(exc, fmt)
        progress.finish(outcome)
        render(_outcome_document(plan, outcome, fmt), fmt)
        if outcome.waited and not outcome.settled:
            click.echo(
                f"drorch: error: the resync of {plan.volume} did not finish within "
                f"{resync_wait:g}s; it goes on in the background (watch `drorch repl status`)",
                err=True,
            )
            sys.exit(EXIT_FAILED)
    finally:
        env.close()


class _Progress:
    """The resync bar on stderr, drawn from the victim's status while waiting."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: ProgressBar | None = None

    def update(self, st: ReplicationStatus) -> None:
        from drorch.cli.progress import ProgressBar
        from drorch.replication.resolve import resync_progress

        done, total, eta = resync_progress(st)
        if self.bar is None or self.bar.total != max(total, 1):
            self.bar = ProgressBar(self.label, total)
        detail = f"{st.connection.value}, {st.out_of_sync_bytes} B out of sync"
        self.bar.update(done, detail + (f", ETA {eta:.0f}s" if eta is not None else ""))

    def finish(self, outcome: ResolveOutcome) -> None:
        if self.bar is not None and outcome.victim is not None:
            self.bar.finish(f"{outcome.victim.connection.value}, disk {outcome.victim.disk.value}")


def _side(side: Observed, st: ReplicationStatus | None, fmt: str) -> dict[str, Any]:
    row: dict[str, Any] = {"site": side.site, "node": side.node}
    if st is None:
        return row | {"connection": f"unreachable: {side.error}"}
    row |= {
        "role": st.role.value,
        "disk": st.disk.value,
        "connection": st.connection.value,
        "out_of_sync_bytes": st.out_of_sync_bytes,
        "generation": st.generation.get("current"),
    }
    if fmt != "table":
        row["status"] = st.as_dict()
    return row


def _plan_document(plan: ResolvePlan, fmt: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "volume": plan.volume,
        "discard": plan.victim.label,
        "keep": plan.survivor.label,
        "would_run": plan.may_run,
        "reason": plan.reason,
    }
    if fmt != "table":  # a person reads the problems on stderr
        doc["problems"] = [
            {"code": r.code, "severity": r.severity.value, "message": r.message}
            for r in plan.reports
        ]
        doc["would_discard"] = plan.would_discard()
    doc["sides"] = [
        _side(plan.victim, plan.victim.status, fmt),
        _side(plan.survivor, plan.survivor.status, fmt),
    ]
    return doc


def _outcome_document(plan: ResolvePlan, outcome: ResolveOutcome, fmt: str) -> dict[str, Any]:
    if outcome.settled:
        result = "resolved: both sides Connected and UpToDate"
    elif outcome.waited:
        result = "resync still running"
    else:
        result = "started: the resync runs in the background"
    return {
        "volume": plan.volume,
        "discarded": plan.victim.label,
        "kept": plan.survivor.label,
        "result": result,
        "reason": plan.reason,
        "steps": [{"step": i, "what": s} for i, s in enumerate(outcome.steps, 1)],
        "sides": [
            _side(plan.victim, outcome.victim, fmt),
            _side(plan.survivor, outcome.survivor, fmt),
        ],
    }
