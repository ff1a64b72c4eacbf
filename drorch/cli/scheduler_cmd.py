"""`drorch scheduler run -c CONFIG [-c CONFIG ...]`: the drill scheduler daemon."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType

import click

from drorch.cli.drill_cmd import configs_option, load_refs


class _Stop(Exception):
    pass


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


@click.group()
def scheduler() -> None:
    """The drill scheduler: starts the drills of many clusters on their cron schedule."""


@scheduler.command()
@configs_option
@click.option("--max-ticks", type=click.IntRange(1), help="Stop after N passes (tests, cron).")
@click.option("--poll-interval", default=5.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds between checks while a drill runs or waits for a site.")  # fmt: skip
@click.option("--textfile", type=click.Path(dir_okay=False, path_type=Path),
              help="Rewrite these Prometheus metrics (*.prom) after every drill.")  # fmt: skip
def run(
    configs: tuple[Path, ...], max_ticks: int | None, poll_interval: float, textfile: Path | None
) -> None:
    """Start each drill at its cron time plus its per-cluster offset, never two drills on
    one site at once; a run missed while this was down runs once, within its
    starting_deadline. SIGTERM or Ctrl-C stops it (running drills carry on)."""
    from drorch.clock import SystemClock
    from drorch.drill.history import History, HistoryError
    from drorch.drill.launch import ProcessLauncher
    from drorch.drill.scheduler import Scheduler, SchedulerEvent
    from drorch.statedir import default_state_dir

    refs = load_refs(configs)
    state = default_state_dir()
    try:
        history = History(state)
    except HistoryError as exc:
        click.echo(f"drorch: error: {exc}", err=True)
        sys.exit(3)

    if textfile is not None and textfile.suffix != ".prom":
        click.echo(f"drorch: error: {textfile}: the textfile collector reads only *.prom files",
                   err=True)  # fmt: skip
        sys.exit(2)

    def log(ev: SchedulerEvent) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ev.at))
        click.echo(f"{stamp} {ev}", err=True)
        if textfile is not None and ev.kind in ("finished", "missed"):
            from drorch.drill.metrics import exposition, registry, write_textfile

            try:
                write_textfile(textfile, exposition(registry(state)))
            except OSError as exc:
                click.echo(f"{stamp} metrics: cannot write {textfile}: {exc}", err=True)

    sched = Scheduler(refs, SystemClock(), ProcessLauncher(state), history,
                      poll_interval=poll_interval, log=log)  # fmt: skip
    click.echo(f"scheduler: {len(refs)} drill(s) of {len(configs)} cluster(s); "
               f"history {history.path}", err=True)  # fmt: skip
    signal.signal(signal.SIGTERM, _stop)
    try:
        sched.run(max_ticks=max_ticks)
    except (_Stop, KeyboardInterrupt):
        click.echo("scheduler: stopped", err=True)
    finally:
        history.close()
