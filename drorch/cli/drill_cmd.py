"""`drorch drill schedule|history|status|run|trend|report|cleanup`.

Exit codes: 0 done; 1 a drill failed; 2 a bad config or argument; 3 refused (a
preflight guard: the skip and its reasons are recorded in the history).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from drorch.cli.loading import EXIT_CONFIG, load_or_exit
from drorch.cli.output import format_option, render

EXIT_FAILED = 1
EXIT_REFUSED = 3


def _die(message: str, code: int) -> NoReturn:
    click.echo(f"drorch: error: {message}", err=True)
    sys.exit(code)


def configs_option(func: Any) -> Any:
    return click.option(
        "-c", "--config", "configs", multiple=True, required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="A cluster YAML (repeat for several clusters).",
    )(func)  # fmt: skip


def load_refs(configs: tuple[Path, ...]) -> list[Any]:
    """Every drill of every config (each validated; errors print and exit 2)."""
    from drorch.drill.schedule import refs_of

    refs: list[Any] = []
    names: dict[str, Path] = {}
    for path in configs:
        cluster = load_or_exit(path)
        if cluster.name in names:
            _die(f"{path} and {names[cluster.name]} both describe cluster {cluster.name!r}",
                 EXIT_CONFIG)  # fmt: skip
        names[cluster.name] = path
        refs.extend(refs_of(path.resolve(), cluster))
    return refs


def _history() -> Any:
    from drorch.drill.history import History, HistoryError
    from drorch.statedir import default_state_dir

    try:
        return History(default_state_dir())
    except HistoryError as exc:
        _die(str(exc), EXIT_REFUSED)


@click.group()
def drill() -> None:
    """Scheduled DR drills: live (over and back), cold (boot at the DR site) and
    test-recovery (copies of the replica on an isolated network)."""


@drill.command()
@configs_option
@click.option("--count", default=3, show_default=True, type=click.IntRange(1, 100),
              help="Upcoming starts per drill.")  # fmt: skip
@format_option()
def schedule(configs: tuple[Path, ...], count: int, fmt: str) -> None:
    """The upcoming drills of every cluster, soonest first: the cron time in the drill's
    time zone, its deterministic offset inside the window, the latest start allowed."""
    from drorch.clock import SystemClock
    from drorch.drill.schedule import upcoming

    rows = [o.as_row() for o in upcoming(load_refs(configs), SystemClock().now(), count)]
    if fmt == "table":
        cols = ["start_at", "cluster", "drill", "kind", "target", "offset_s", "cron", "tz",
                "latest_start"]  # fmt: skip
        render(rows, fmt, cols)
        return
    render(rows, fmt)


@drill.command()
@click.option("--cluster", help="Only this cluster.")
@click.option("--drill", "drill_name", help="Only this drill.")
@click.option("--last", default=20, show_default=True, type=click.IntRange(1, 10000))
@format_option()
def history(cluster: str | None, drill_name: str | None, last: int, fmt: str) -> None:
    """Every drill that was due: run (RTO, RPO, worst downtime), skipped by a guard or
    missed by the scheduler, with the reasons."""
    from drorch.drill.schedule import iso

    with _history() as h:
        rows = h.rows(cluster, drill_name, last)
    _mark_interrupted(rows)
    if fmt != "table":
        render([r.as_dict() for r in rows], fmt)
        return
    render([
        {"id": r.id, "started": iso(r.started_at), "cluster": r.cluster, "drill": r.drill,
         "kind": r.kind, "result": r.result, "rto_s": r.rto_s, "rpo_bytes": r.rpo_bytes,
         "max_downtime_s": r.max_downtime_s, "run_id": r.run_id or None,
         "why": "; ".join(f"{x.code}: {x.message}" for x in r.reasons) or None}
        for r in rows
    ], fmt)  # fmt: skip


def _mark_interrupted(rows: list[Any]) -> None:
    """Show a `running` row whose process is gone as `interrupted` (the scheduler records
    it so when it next starts; a read command writes nothing)."""
    from drorch.drill.interrupted import INTERRUPTED, interrupted_reason
    from drorch.drill.liveness import ProcessProbe
    from drorch.statedir import default_state_dir

    probe = ProcessProbe(default_state_dir())
    for r in rows:
        if r.result == "running" and not probe.is_live(r):
            r.result = INTERRUPTED
            r.reasons = [interrupted_reason(r, "`drorch drill history`")]


@drill.command()
@format_option()
def status(fmt: str) -> None:
    """Drills running now, drills whose process died (not yet recorded as interrupted by
    a scheduler), and interrupted drills whose runbook run still waits for an operator
    (resume, abandon, or `drorch drill cleanup` for a test recovery)."""
    from drorch.drill.schedule import iso
    from drorch.runbook.journal import RUNNING, Journal, JournalError
    from drorch.statedir import default_state_dir

    with _history() as h:
        rows = h.rows(limit=100000, results=("running", "interrupted"))
    unrecorded = {r.id for r in rows if r.result == "running"}
    _mark_interrupted(rows)
    try:
        journal = Journal(default_state_dir())
    except JournalError as exc:
        _die(str(exc), EXIT_REFUSED)
    try:
        runs = {r.run_id: journal.run(r.run_id) for r in rows if r.run_id}
    finally:
        journal.close()
    waiting = [r for r in rows if r.id in unrecorded or (
        (rec := runs.get(r.run_id)) is not None and rec.status == RUNNING)]  # fmt: skip
    render([
        {"id": r.id, "started": iso(r.started_at), "cluster": r.cluster, "drill": r.drill,
         "kind": r.kind, "result": r.result, "run_id": r.run_id or None,
         "why": "; ".join(f"{x.code}: {x.message}" for x in r.reasons) or None}
        for r in waiting
    ], fmt)  # fmt: skip


@drill.command("run")
@click.argument("name")
@click.option("-c", "--config", "config", required=True, help="The cluster YAML.",
              type=click.Path(dir_okay=False, path_type=Path))  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Check the guards and every step; change nothing.")
@click.option("--yes", is_flag=True, help="Answer every confirmation gate yes.")
@click.option("--scheduled-for", type=float, help="The cron time (set by the scheduler).")
@click.option("--runbooks", "runbooks", type=click.Path(file_okay=False, path_type=Path),
              help="The drill runbooks folder (default: shipped runbooks/drills).")  # fmt: skip
def run_cmd(name: str, config: Path, dry_run: bool, yes: bool, scheduled_for: float | None,
            runbooks: Path | None) -> None:  # fmt: skip
    """Run drill NAME now: the preflight guards (a refusal is recorded as skipped, exit
    3), then its runbook (live, cold or test-recovery), then its measurements into the
    history. Exit 0 succeeded, 1 failed or rolled back."""
    from drorch.cli.loading import cluster_environment
    from drorch.cli.runbook_cmd import _options
    from drorch.drill.runner import drill_runbook, run_drill
    from drorch.model.reports import ConfigError

    with cluster_environment(config) as loaded:
        cluster = loaded.cluster
        found = next((d for d in cluster.drills if d.name == name), None)
        if found is None:
            known = ", ".join(d.name for d in cluster.drills) or "none"
            _die(f"cluster {cluster.name} has no drill {name!r} (drills: {known})", EXIT_CONFIG)
        try:
            rb = drill_runbook(found, runbooks)
        except ConfigError as exc:
            for report in exc.reports:
                click.echo(str(report), err=True)
            sys.exit(EXIT_CONFIG)
        options = _options(dry_run, yes, False, False, str(config.resolve()))
        outcome = run_drill(cluster, found, loaded.env, options, runbook=rb,
                            scheduled_for=scheduled_for, problems=loaded.problems)  # fmt: skip
    for reason in outcome.reasons:
        click.echo(f"  {reason.code}: {reason.message}", err=True)
    m = outcome.measurements
    if m:
        downs = m.get("downtime_s")
        each = (
            ", ".join(f"{vm} {d} s" for vm, d in downs.items()) if isinstance(downs, dict) else ""
        )
        click.echo(f"drill {name}: {outcome.result}; RTO {m.get('rto_s')} s, RPO "
                   f"{m.get('rpo_bytes')} bytes, total {m.get('total_s')} s, downtime "
                   f"{each or 'none'}")  # fmt: skip
    else:
        click.echo(f"drill {name}: {outcome.result}: {outcome.message}")
    if outcome.result in ("succeeded", "dry-run"):
        return
    sys.exit(EXIT_REFUSED if outcome.result in ("skipped", "dry-run-failed") else EXIT_FAILED)


@drill.command()
@click.option("-c", "--config", "configs", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Take the targets from these configs (default: those recorded).")  # fmt: skip
@click.option("--last", default=20, show_default=True, type=click.IntRange(2, 10000),
              help="Drills per (cluster, drill) to consider.")  # fmt: skip
@format_option()
def trend(configs: tuple[Path, ...], last: int, fmt: str) -> None:
    """RTO and worst downtime of the last drill beside the median of the earlier ones;
    flags over-target, regression (50% worse than the median of >= 3 runs), failing."""
    from drorch.drill.trend import trends

    targets = {r.key: r.drill.targets for r in load_refs(configs)} if configs else None
    with _history() as h:
        rows = h.rows(limit=100000)
    by: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        by.setdefault((r.cluster, r.drill), []).append(r)
    kept = [r for group in by.values() for r in group[-last:]]
    data = [t.as_dict() for t in trends(sorted(kept, key=lambda r: r.started_at), targets)]
    if fmt == "table":
        for d in data:
            d["flags"] = ", ".join(d["flags"]) or "ok"  # type: ignore[arg-type]
            d.pop("rtos")
    render(data, fmt)


@drill.command()
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md",
              show_default=True)  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")  # fmt: skip
def report(run_id: str, fmt: str, output: Path | None) -> None:
    """The report of one drill (its runbook RUN_ID or history id): summary, pass or fail
    against the targets, the step timeline, progress curves, the trend. HTML is one
    self-contained file (no network)."""
    import json

    from drorch.drill.report_data import report_data, report_markdown
    from drorch.drill.report_html import report_html
    from drorch.drill.trend import trend as trend_of

    with _history() as h:
        row = h.get(run_id)
        if row is None:
            _die(f"no drill {run_id!r} in the history (see `drorch drill history`)", EXIT_CONFIG)
        earlier = [
            r for r in h.rows(row.cluster, row.drill, 10000) if r.started_at <= row.started_at
        ]
    tr = trend_of(earlier[-20:])
    if fmt == "html":
        text = report_html(row, tr)
    elif fmt == "json":
        text = json.dumps(report_data(row, earlier[-20:], tr), indent=2) + "\n"
    else:
        text = report_markdown(row, earlier[-20:], tr)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"wrote {output}", err=True)


@drill.command("cleanup")
@click.argument("run_id")
@click.option("-c", "--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="The cluster YAML (default: the one the run was started with).")  # fmt: skip
def cleanup_cmd(run_id: str, config: Path | None) -> None:
    """Remove every trace a test-recovery run left (its copies, read-only exports,
    overlays, isolated network), e.g. after a crash; then give up the interrupted run."""
    from drorch.cli.loading import cluster_environment
    from drorch.drill.cleanup import CleanupRefused, cleanup_run
    from drorch.runbook.journal import Journal, JournalError
    from drorch.statedir import default_state_dir

    if config is None:
        try:
            journal = Journal(default_state_dir())
        except JournalError as exc:
            _die(str(exc), EXIT_REFUSED)
        record = journal.run(run_id)
        journal.close()
        if record is None or not record.config:
            _die(f"no run {run_id!r} in the journal; give -c CONFIG", EXIT_CONFIG)
        config = Path(record.config)
    with cluster_environment(config) as loaded:
        try:
            report = cleanup_run(loaded.cluster, loaded.env, run_id,
                                 lambda line: click.echo(f"  {line}"))  # fmt: skip
        except CleanupRefused as exc:
            _die(str(exc), EXIT_REFUSED)
    for problem in report.problems:
        click.echo(f"drorch: error: {problem}", err=True)
    if report.problems:
        sys.exit(EXIT_FAILED)
    gone = f"removed {len(report.removed)} trace(s)" if report.removed else "nothing was left"
    click.echo(f"run {run_id}: {gone}" + ("; the run is abandoned" if report.abandoned else ""))
