"""`drorch runbook list|validate|actions|run|resume|show|history|abandon`.

Exit codes: 0 done (or a clean dry run); 1 a step failed, was declined, or a dry run
found steps that would fail; 2 a bad runbook, config or param; 3 refused (cluster
locked by another run, an interrupted run waiting, gates nobody can answer, a plan
blocked or needing a data-loss acknowledgement, a step that refused as unsafe: no quorum,
the lost site not confirmed fenced, a refused promotion or VM start, a split brain);
130 interrupted (resumable).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from drorch.cli.flags import confirm_or_stop, dry_run_option, yes_option
from drorch.cli.loading import EXIT_CONFIG, config_option
from drorch.cli.output import FORMATS, format_option, render

EXIT_FAILED = 1
EXIT_REFUSED = 3


def _die(message: str, code: int) -> NoReturn:
    click.echo(f"drorch: error: {message}", err=True)
    sys.exit(code)


def _runbook_dirs(explicit: Path | None) -> list[Path]:
    if explicit is not None:
        return [explicit]
    if os.environ.get("DRORCH_RUNBOOKS"):
        return [Path(os.environ["DRORCH_RUNBOOKS"])]
    from drorch.shipped_runbooks import shipped_runbooks_dir

    shipped = shipped_runbooks_dir()
    return [p for p in (Path("runbooks"), shipped) if p is not None and p.is_dir()][:1]


def _load(path: Path) -> Any:
    from drorch.model.reports import ConfigError
    from drorch.runbook.load import load_runbook

    try:
        return load_runbook(path)
    except ConfigError as exc:
        for report in exc.reports:
            click.echo(str(report), err=True)
        sys.exit(EXIT_CONFIG)


@click.group()
def runbook() -> None:
    """Runbooks: written, dry-runnable, resumable DR procedures (runbooks/*.yaml)."""


@runbook.command("list")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path))
@format_option()
def list_(directory: Path | None, fmt: str) -> None:
    """The runbooks in runbooks/ (or --dir, or $DRORCH_RUNBOOKS)."""
    from drorch.model.reports import ConfigError
    from drorch.runbook.load import load_runbook

    rows: list[dict[str, object]] = []
    for folder in _runbook_dirs(directory):
        for path in sorted(folder.glob("*.y*ml")):
            try:
                rb = load_runbook(path)
            except ConfigError as exc:
                rows.append({"name": path.stem, "file": str(path), "steps": None,
                             "params": "", "description": f"INVALID ({len(exc.reports)} "
                             "problems; see `drorch runbook validate`)"})  # fmt: skip
                continue
            rows.append({"name": rb.name, "file": str(path), "steps": len(rb.steps),
                         "params": ", ".join(p.name for p in rb.params),
                         "description": rb.description.strip().splitlines()[0]
                         if rb.description.strip() else ""})  # fmt: skip
    render(rows, fmt)


@runbook.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@format_option()
def validate(files: tuple[Path, ...], fmt: str) -> None:
    """Check runbooks; every problem is printed as FILE:LINE:COL: CODE: message (table:
    on stderr, `FILE: ok` on stdout; json/yaml: one record per file on stdout). Exit 2
    if any file has a problem."""
    from drorch.model.reports import ConfigError
    from drorch.runbook.load import load_runbook

    bad = 0
    records: list[dict[str, Any]] = []
    for path in files:
        try:
            rb = load_runbook(path)
        except ConfigError as exc:
            bad += 1
            records.append({"file": str(path), "ok": False, "name": None, "steps": None,
                            "problems": [r.as_dict() for r in exc.reports]})  # fmt: skip
            if fmt == "table":
                for report in exc.reports:
                    click.echo(str(report), err=True)
            continue
        records.append(
            {"file": str(path), "ok": True, "name": rb.name, "steps": len(rb.steps), "problems": []}
        )
        if fmt == "table":
            click.echo(f"{path}: ok ({rb.name}: {len(rb.steps)} steps)")
    if fmt != "table":
        render(records, fmt)
    if bad:
        sys.exit(EXIT_CONFIG)


@runbook.command()
@click.argument("name", required=False)
@format_option()
def actions(name: str | None, fmt: str) -> None:
    """Every step type with its doc and params (or one, in full)."""
    from drorch.runbook.steps.base import load_step_types, suggest

    types = load_step_types()
    if name is not None:
        step = types.get(name)
        if step is None:
            hint = suggest(name, sorted(types))
            _die(f"no action {name!r}" + (f" (did you mean {hint!r}?)" if hint else ""), 2)
        data = {"name": step.name, "undo": step.undo, "idempotent": step.idempotent,
                "doc": step.doc, "params": [p.describe() for p in step.params]}  # fmt: skip
        if fmt == "table":
            click.echo(f"{step.name}" + (f"  (undo: {step.undo})" if step.undo else ""))
            click.echo(f"\n{step.doc}\n")
            render([{k: v for k, v in p.items() if k != "choices"} for p in data["params"]], fmt)  # type: ignore[union-attr]
            return
        render(data, fmt)
        return
    rows = [{"action": n, "undo": t.undo, "params": ", ".join(
        p.name + ("" if p.required else "?") for p in t.params), "summary": t.summary}
        for n, t in sorted(types.items())]  # fmt: skip
    render(rows, fmt)


def _options(dry_run: bool, yes: bool, force: bool, accept: bool, config: str) -> Any:
    from drorch.cli.runbook_output import CliOutput, TtyConfirmer
    from drorch.runbook.gates import YesConfirmer
    from drorch.runbook.setup import RunOptions

    confirmer: Any = None
    if yes:
        confirmer = YesConfirmer()
    elif sys.stdin.isatty():
        confirmer = TtyConfirmer()
    return RunOptions(dry_run=dry_run, force=force, accept_data_loss=accept,
                      confirmer=confirmer, output=CliOutput(), config_path=config)  # fmt: skip


def _carry_out(
    rb: Any, config: Path, options: Any, run_id: str | None, params: dict[str, str]
) -> None:
    from drorch.cli.loading import cluster_environment
    from drorch.runbook.engine import Engine
    from drorch.runbook.journal import JournalError
    from drorch.runbook.setup import ParamError, RunRefused

    engine: Engine | None = None
    with cluster_environment(config) as loaded:
        for problem in loaded.problems:
            click.echo(f"note: {problem}", err=True)
        try:
            engine = Engine(rb, loaded.cluster, loaded.env, options)
            summary = engine.resume(run_id) if run_id else engine.start(params)
        except ParamError as exc:
            _die("; ".join(exc.problems), EXIT_CONFIG)
        except RunRefused as exc:
            _die(f"{exc.code}: {exc.message}", EXIT_REFUSED)
        except JournalError as exc:
            _die(str(exc), EXIT_REFUSED)
        except KeyboardInterrupt:
            rid = (engine.run_id if engine else "") or "RUN_ID"
            _die(f"interrupted; `drorch runbook resume {rid}` continues the run", 130)
        except Exception as exc:  # a bug must not print a traceback; the run is resumable
            rid = (engine.run_id if engine else "") or "RUN_ID"
            _die(f"internal error: {type(exc).__name__}: {exc}; the journal keeps run {rid} "
                 f"(`drorch runbook resume {rid}`)", EXIT_FAILED)  # fmt: skip
    if summary.status in ("succeeded", "dry-run"):
        return
    if summary.refused:
        _die(f"refused: {summary.message}", EXIT_REFUSED)
    _die(f"run {summary.run_id} {summary.status}: {summary.message}", EXIT_FAILED)


@runbook.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@config_option
@click.option("--dry-run", is_flag=True, help="Check every step; change nothing.")
@click.option("--yes", is_flag=True, help="Answer every confirmation gate yes.")
@click.option("--param", "params", multiple=True, metavar="K=V", help="Set a runbook param.")
@click.option("--force", is_flag=True, help="Relax forceable blockers only.")
@click.option("--accept-data-loss", is_flag=True, help="Allow steps that may lose writes.")
def run(file: Path, config: Path, dry_run: bool, yes: bool, params: tuple[str, ...],
        force: bool, accept_data_loss: bool) -> None:  # fmt: skip
    """Run a runbook against the cluster in CONFIG."""
    given: dict[str, str] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _die(f"--param {item!r}: write NAME=VALUE", EXIT_CONFIG)
        given[key.strip()] = value
    if accept_data_loss and not force:
        _die("--accept-data-loss goes with --force", EXIT_CONFIG)
    rb = _load(file)
    options = _options(dry_run, yes, force, accept_data_loss, str(config.resolve()))
    _carry_out(rb, config, options, None, given)


def _journal() -> Any:
    from drorch.runbook.journal import Journal, JournalError
    from drorch.statedir import default_state_dir

    try:
        return Journal(default_state_dir())
    except JournalError as exc:
        _die(str(exc), EXIT_REFUSED)


def _record(run_id: str) -> Any:
    record = _journal().run(run_id)
    if record is None:
        _die(f"no run {run_id!r} in the journal", EXIT_CONFIG)
    return record


@runbook.command()
@click.argument("run_id")
@click.option("-c", "--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="The cluster YAML (default: the one the run was started with).")  # fmt: skip
@click.option("--yes", is_flag=True, help="Answer every confirmation gate yes.")
@click.option("--force", is_flag=True)
@click.option("--accept-data-loss", is_flag=True)
def resume(
    run_id: str, config: Path | None, yes: bool, force: bool, accept_data_loss: bool
) -> None:
    """Continue a run that was interrupted (even by kill -9): done steps are not run
    again, a step that started but never finished is first checked with its probe."""
    from drorch.model.reports import ConfigError
    from drorch.runbook.load import parse_runbook_text

    record = _record(run_id)
    path = config or Path(record.config)
    try:
        rb = parse_runbook_text(record.runbook_text, record.runbook_file)
    except ConfigError as exc:
        _die(f"run {run_id}'s runbook no longer loads: {exc.reports[0]}", EXIT_CONFIG)
    options = _options(False, yes, force, accept_data_loss, str(path.resolve()))
    _carry_out(rb, path, options, run_id, {})


@runbook.command()
@click.argument("run_id")
@dry_run_option
@yes_option
def abandon(run_id: str, dry_run: bool, yes: bool) -> None:
    """Give up an interrupted run (it is kept in the history as abandoned); it can no
    longer be resumed, so it asks first unless --yes."""
    from drorch.runbook.journal import RUNNING
    from drorch.runbook.lock import RunLock

    journal = _journal()
    record = _record(run_id)
    if record.status != RUNNING:
        _die(f"run {run_id} is {record.status}, not interrupted", EXIT_REFUSED)
    if RunLock(journal.path.parent, record.cluster).holder() == run_id:
        _die(f"run {run_id} is still in progress (pid {record.pid})", EXIT_REFUSED)
    what = f"abandon run {run_id} ({record.runbook} on {record.cluster}): it cannot be resumed"
    if dry_run:
        click.echo(f"would {what}")
        return
    confirm_or_stop(yes, f"{what[0].upper()}{what[1:]}?")
    journal.set_status(run_id, "abandoned", "abandoned by the operator", ended_at=None)
    click.echo(f"run {run_id} abandoned")


def _status(journal: Any, record: Any) -> str:
    from drorch.runbook.lock import RunLock
    from drorch.runbook.report import effective_status

    return effective_status(record, RunLock(journal.path.parent, record.cluster).holder())


@runbook.command()
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice((*FORMATS, "md")), default="table",
              show_default=True, help="Output format.")  # fmt: skip
def show(run_id: str, fmt: str) -> None:
    """A run's timeline (durations, who confirmed) and, for migrations and failovers,
    the measured RTO, RPO and per-VM downtime."""
    from drorch.cli.runbook_show import render_report
    from drorch.runbook.report import run_report

    journal = _journal()
    record = _record(run_id)
    data = run_report(record, journal.events(run_id), _status(journal, record))
    render_report(data, fmt)


@runbook.command()
@click.option("--cluster", help="Only this cluster's runs.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000))
@format_option()
def history(cluster: str | None, limit: int, fmt: str) -> None:
    """The runs in the journal, newest first."""
    from drorch.runbook.report import history_rows

    journal = _journal()
    records = journal.runs(cluster, limit)
    rows = history_rows([(r, _status(journal, r)) for r in records])
    render(rows, fmt, ["run_id", "runbook", "cluster", "status", "dry_run", "user",
                       "duration_s", "message"] if fmt == "table" else None)  # fmt: skip
