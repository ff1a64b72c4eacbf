"""`drorch lab wan`, `drorch lab fault ...`, `drorch lab events`: WAN impairment and
fault injection on a running lab; every change is recorded in the lab's event log."""

from __future__ import annotations

from typing import Any

import click

from drorch.cli.flags import duration
from drorch.cli.lab_common import lab_instance, lab_options
from drorch.cli.output import format_option, render


def _duration(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A duration with its unit (`20ms`), zero allowed (`--delay 0` removes the delay)."""
    if value is None:
        return None
    from drorch.model.units import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def _wan_rows(state: Any) -> list[dict[str, Any]]:
    return [
        {
            "link": link.name,
            "group": link.group,
            "proxy": f"{link.listen[0]}:{link.listen[1]}",
            "target": f"{link.target[0]}:{link.target[1]}",
            "partition": state.partitions.get(link.group, ""),
        }
        for link in state.links
    ]


@click.command()
@lab_options
@click.option("--delay", callback=_duration, help="One-way delay, each direction (e.g. 20ms).")
@click.option("--jitter", callback=_duration, help="± per chunk, never reordering (e.g. 2ms).")
@click.option("--loss", help="Chunks lost (e.g. 1%).")
@click.option("--loss-mode", type=click.Choice(["stall", "reset"]),
              help="A lost chunk stalls one TCP RTO (200 ms; default) or resets.")  # fmt: skip
@click.option("--clear", is_flag=True, help="No impairment.")
@format_option()
def wan(
    lab_name: str,
    prefix: str,
    subnet: str,
    delay: float | None,
    jitter: float | None,
    loss: str | None,
    loss_mode: str | None,
    clear: bool,
    fmt: str,
) -> None:
    """Show or set the WAN emulator (a userspace TCP proxy on every inter-site link;
    there is no netem here). Options not given keep their value."""
    from dataclasses import replace

    from drorch.lab.wan import Impairment, WanError, parse_percent

    with lab_instance(lab_name, prefix, subnet) as the_lab:
        if not the_lab.network.is_up():
            raise click.ClickException(f"lab {lab_name} is not up: run `drorch lab up` first")
        try:
            imp = Impairment() if clear else the_lab.wan.state().impairment
            changes: dict[str, Any] = {}
            if delay is not None:
                changes["delay"] = delay
            if jitter is not None:
                changes["jitter"] = jitter
            if loss is not None:
                changes["loss"] = parse_percent(loss)
            if loss_mode is not None:
                changes["loss_mode"] = loss_mode
            imp = replace(imp, **changes)
        except (WanError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        if changes or clear:
            state = the_lab.wan.set(imp)
            the_lab.faults.events.record("wan", "all", imp.describe())
        else:
            state = the_lab.wan.ensure()
        click.echo(f"WAN: {state.impairment.describe()}", err=True)
        if fmt == "table":
            render(_wan_rows(state), fmt)
        else:
            from dataclasses import asdict

            render({"impairment": asdict(state.impairment), "links": _wan_rows(state)}, fmt)


@click.group()
def fault() -> None:
    """Inject a fault into the running lab (each one is logged: `drorch lab events`)."""


def _done(event: Any) -> None:
    click.echo(f"{event.iso_time} {event.kind} {event.target}: {event.detail}", err=True)


@fault.command("partition")
@lab_options
@click.argument("pair", type=click.Choice(["A-B", "A-witness", "B-witness"]))
@click.option("--kind", type=click.Choice(["drop", "reset"]), default="drop", show_default=True,
              help="A black hole, or TCP resets (a firewall REJECT).")  # fmt: skip
def partition_cmd(lab_name: str, prefix: str, subnet: str, pair: str, kind: str) -> None:
    """Cut PAIR (undo with `drorch lab fault heal`)."""
    with lab_instance(lab_name, prefix, subnet) as the_lab:
        _done(the_lab.faults.partition(pair, kind))


@fault.command("heal")
@lab_options
@click.argument("pair", required=False, type=click.Choice(["A-B", "A-witness", "B-witness"]))
def heal_cmd(lab_name: str, prefix: str, subnet: str, pair: str | None) -> None:
    """Lift the partition of PAIR, or every partition."""
    with lab_instance(lab_name, prefix, subnet) as the_lab:
        _done(the_lab.faults.heal(pair))


@fault.command("kill-site")
@lab_options
@click.argument("site", metavar="SITE")
def kill_site(lab_name: str, prefix: str, subnet: str, site: str) -> None:
    """Power loss at SITE: SIGKILL every process in its namespace (QEMU included)."""
    with lab_instance(lab_name, prefix, subnet) as the_lab:
        if site == "witness":
            raise click.ClickException("use `drorch lab fault kill-witness` for the witness")
        _done(the_lab.faults.kill_place(site))


@fault.command("restore")
@lab_options
def restore_cmd(lab_name: str, prefix: str, subnet: str) -> None:
    """Power back on: start every daemon that is down (a killed site's libvirtd,
    replication daemons and agent; a killed witness), never a guest: where a guest runs
    after a fault is the agents' business. Partitions stay (`heal` lifts them)."""
    from drorch.lab.stack import LabStack, StackError

    with lab_instance(lab_name, prefix, subnet) as the_lab:
        if not the_lab.network.is_up():
            raise click.ClickException(f"lab {lab_name} is not up: run `drorch lab up` first")
        try:
            LabStack(the_lab).restore()
        except (StackError, OSError, TimeoutError) as exc:
            raise click.ClickException(f"restore: {exc}") from None
        _done(the_lab.faults.events.record("restore", "all", "daemons back"))


@fault.command("kill-witness")
@lab_options
def kill_witness(lab_name: str, prefix: str, subnet: str) -> None:
    """SIGKILL every process in the witness namespace (the quorum daemon)."""
    with lab_instance(lab_name, prefix, subnet) as the_lab:
        _done(the_lab.faults.kill_place("witness"))


@fault.command("freeze-agent")
@lab_options
@click.argument("site", metavar="SITE")
@click.option("--thaw", is_flag=True, help="SIGCONT instead.")
def freeze_agent(lab_name: str, prefix: str, subnet: str, site: str, thaw: bool) -> None:
    """SIGSTOP SITE's agent (a hung node; its soft watchdog must fence it)."""
    with lab_instance(lab_name, prefix, subnet) as the_lab:
        _done(the_lab.faults.freeze_agent(site, thaw=thaw))


@fault.command("slow-disk")
@lab_options
@click.argument("site", metavar="SITE")
@click.option("--pause", default="50ms", show_default=True, callback=duration,
              help="Frozen part of each period.")  # fmt: skip
@click.option("--period", default="100ms", show_default=True, callback=duration)
@click.option("--off", is_flag=True, help="Restore the disk speed.")
def slow_disk(
    lab_name: str, prefix: str, subnet: str, site: str, pause: float, period: float, off: bool
) -> None:
    """Slow SITE's disks: its replication daemons (the guests' NBD disks) are paused
    PAUSE of every PERIOD."""
    with lab_instance(lab_name, prefix, subnet) as the_lab:
        if off:
            event = the_lab.faults.fast_disk(site)
            if event is not None:
                _done(event)
            return
        if not pause < period:
            raise click.ClickException("--pause must be shorter than --period")
        _done(the_lab.faults.slow_disk(site, pause, period))


@click.command()
@lab_options
@format_option()
def events(lab_name: str, prefix: str, subnet: str, fmt: str) -> None:
    """The lab's event log: every fault and WAN change, timestamped."""
    from dataclasses import asdict

    with lab_instance(lab_name, prefix, subnet) as the_lab:
        log = the_lab.faults.events.read()
        if fmt == "table":
            render([e.row() for e in log], fmt, ["time", "kind", "target", "detail"])
        else:
            render([asdict(e) | {"iso_time": e.iso_time} for e in log], fmt)
