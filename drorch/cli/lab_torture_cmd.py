"""`drorch lab torture`: a Jepsen-style nemesis against the whole lab."""

from __future__ import annotations

import sys
from typing import Any

import click

from drorch.cli.exits import ExitCode
from drorch.cli.lab_common import lab_instance, lab_options
from drorch.cli.output import format_option, render

COLUMNS = ["run", "faults", "split_brains", "acked_lost", "recovered", "recovery_s",
           "fault_to_healthy_s", "guest_at", "verdict"]  # fmt: skip


@click.command()
@lab_options
@click.option("--runs", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="How many schedules to play.")  # fmt: skip
@click.option("--seed", type=int, default=1, show_default=True,
              help="Schedules are a function of the seed (and the run number).")  # fmt: skip
@click.option("--mode", type=click.Choice(["sync", "async"]), default="sync", show_default=True,
              help="Replication mode of the guest's disk (a loss fails only sync).")  # fmt: skip
@click.option("--recovery-bound", type=click.FloatRange(10, 1800), default=150.0,
              show_default=True, help="Seconds after the heal to get back to healthy.")  # fmt: skip
@click.option("--plan", "plan_only", is_flag=True, help="Print the schedules; inject nothing.")
@click.option("--down/--keep", "down_after", default=False, show_default=True,
              help="Bring the lab down at the end (default: leave it up).")  # fmt: skip
@format_option()
def torture(
    lab_name: str,
    prefix: str,
    subnet: str,
    runs: int,
    seed: int,
    mode: str,
    recovery_bound: float,
    plan_only: bool,
    down_after: bool,
    fmt: str,
) -> None:
    """Play RUNS random schedules of 1-3 faults (partitions, site kills, witness
    kill, frozen agents, slow disks) against the lab's guest, healing and restoring
    after each; judge split brains (role logs, replicas, hypervisors), acknowledged
    counter values lost and time to recovery. Exit 4 on a split brain, 1 on an
    acknowledged loss in sync mode or a run that did not recover."""
    from drorch.lab.torture_plan import make_schedules

    schedules = make_schedules(seed, runs)
    if plan_only:
        render([{"run": s.run, "schedule": s.describe()} for s in schedules], fmt)
        return
    from drorch.lab.stack import LabStack
    from drorch.lab.torture import LabTorture
    from drorch.lab.torture_judge import totals

    with lab_instance(lab_name, prefix, subnet) as the_lab:
        stack = LabStack(the_lab)
        nemesis = LabTorture(
            stack, lambda line: click.echo(line, err=True), mode=mode, recovery_bound=recovery_bound
        )
        results = []
        try:
            results = nemesis.run(schedules)
        finally:
            if down_after:
                for line in stack.down():
                    click.echo(line, err=True)
    verdicts = [r.verdict for r in results if r.verdict is not None]
    summary: dict[str, Any] = {"seed": seed, "mode": mode, "aborted": nemesis.aborted} | totals(
        verdicts, [sum(1 for i in r.injected if i.ok) for r in results]
    )
    if fmt == "table":
        render([r.row() for r in results], fmt, COLUMNS)
        click.echo("")
        render(summary, fmt)
    else:
        render({"runs": [r.as_dict() for r in results], "totals": summary}, fmt)
    if nemesis.aborted:
        click.echo(f"drorch: error: torture stopped {nemesis.aborted}", err=True)
    if summary["split_brains"]:
        sys.exit(int(ExitCode.SPLIT_BRAIN))
    unsafe = mode == "sync" and summary["acked_values_lost"]
    if unsafe or summary["recovered"] < len(results) or nemesis.aborted:
        sys.exit(int(ExitCode.FAILED))
