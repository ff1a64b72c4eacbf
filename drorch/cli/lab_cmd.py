"""`drorch lab` (also `python -m drorch.lab`): the two-site libvirt lab on this machine.

Needs root. The lab's directory is $DRORCH_LAB_DIR (default .cache/lab in the checkout);
`--name`, `--prefix` and `--subnet` let a second lab run beside the first.
Exit status: 0 done; 1 a step failed (the message says which).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from drorch.cli.lab_common import lab_instance, lab_options
from drorch.cli.lab_fault_cmd import events, fault, wan
from drorch.cli.lab_torture_cmd import torture
from drorch.cli.output import format_option, render


@click.group("lab")
def lab() -> None:
    """The two-site lab: network namespaces, one libvirtd per site, tiny QEMU guests."""


lab.add_command(wan)
lab.add_command(fault)
lab.add_command(events)
lab.add_command(torture)


@lab.command()
@lab_options
@click.option("--vms", type=click.IntRange(0, 4), default=0, show_default=True,
              help="Build the whole cluster with this many guests (0: namespaces and"
              " libvirtd only).")  # fmt: skip
@click.option("--mode", type=click.Choice(["sync", "async"]), default="sync", show_default=True,
              help="Replication mode of the guests' disks.")  # fmt: skip
@format_option()
def up(lab_name: str, prefix: str, subnet: str, vms: int, mode: str, fmt: str) -> None:
    """Build (or reuse) the guest image, create the namespaces, start both sites; with
    --vms N also the witness, the WAN proxy, N replicated guests and the agents."""
    with lab_instance(lab_name, prefix, subnet) as the_lab:
        if vms:
            from drorch.lab.cluster_full import LabSpec
            from drorch.lab.stack import LabStack

            stack = LabStack(the_lab)
            stack.up(LabSpec(vms=vms, mode=mode))
            click.echo(f"cluster file: {stack.files.cluster}", err=True)
            render(_status(the_lab), fmt)
            return
        click.echo(f"building/reusing the guest image in {the_lab.layout.image_dir}", err=True)
        image = the_lab.up()
        click.echo(f"guest kernel {image.kernel}\nguest initrd {image.initrd}", err=True)
        render(the_lab.status(), fmt)


def _status(the_lab: Any) -> dict[str, Any]:
    from drorch.lab.stack import LabStack

    out = dict(the_lab.status())
    parts = LabStack(the_lab).status()
    if parts:
        out["cluster"] = parts
    return out


@lab.command()
@lab_options
def down(lab_name: str, prefix: str, subnet: str) -> None:
    """Stop guests, QEMU and the daemons by PID; delete the namespaces."""
    from drorch.lab.stack import LabStack

    with lab_instance(lab_name, prefix, subnet) as the_lab:
        for line in LabStack(the_lab).down():
            click.echo(line, err=True)
        click.echo(f"lab {lab_name} is down", err=True)


@lab.command()
@lab_options
@format_option()
def status(lab_name: str, prefix: str, subnet: str, fmt: str) -> None:
    """Namespaces, daemons (PIDs), URIs and running guests of each site; with the whole
    cluster up, also the witness, proxy, volumes, guests and agents."""
    with lab_instance(lab_name, prefix, subnet) as the_lab:
        render(_status(the_lab), fmt)


@lab.command()
@lab_options
@click.option("--mode", type=click.Choice(["reject", "drop", "link"]), default="drop",
              show_default=True, help="TCP resets, silent drops, or WAN ports down.")  # fmt: skip
def partition(lab_name: str, prefix: str, subnet: str, mode: str) -> None:
    """Cut the WAN between the sites (undo with `heal`)."""
    with lab_instance(lab_name, prefix, subnet) as the_lab:
        the_lab.partition(mode)
        click.echo(f"WAN cut ({mode}) between {', '.join(the_lab.layout.site_names)}", err=True)


@lab.command()
@lab_options
def heal(lab_name: str, prefix: str, subnet: str) -> None:
    """Undo any partition."""
    with lab_instance(lab_name, prefix, subnet) as the_lab:
        the_lab.heal()
        click.echo("WAN healed", err=True)


@lab.command()
@lab_options
@click.option("--guest", "guests", multiple=True, help="VM names (default: labvm).")
@click.option(
    "--relative-to",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write paths relative to this folder (where the file will live), e.g. lab.",
)
def config(
    lab_name: str, prefix: str, subnet: str, guests: tuple[str, ...], relative_to: Path | None
) -> None:
    """Print the lab's cluster config (driver libvirt), e.g.
    `drorch lab config --relative-to lab > lab/libvirt.yaml`."""
    from drorch.lab.cluster_config import lab_cluster_yaml

    with lab_instance(lab_name, prefix, subnet) as the_lab:
        text = lab_cluster_yaml(
            the_lab.layout,
            guests or ("labvm",),
            relative_to=relative_to.resolve() if relative_to else None,
        )
        click.echo(text, nl=False)


@lab.command()
@lab_options
@click.argument("guest_name", metavar="NAME")
@click.option("--site", default="siteA", show_default=True)
@click.option("--memory", type=click.IntRange(min=72), default=128, show_default=True,
              help="MiB.")  # fmt: skip
@click.option("--cmdline", default="", help='Guest switches, e.g. "dirty=16" or "disk=1".')
def guest(
    lab_name: str, prefix: str, subnet: str, guest_name: str, site: str, memory: int, cmdline: str
) -> None:
    """Define and start a heartbeat guest at SITE; wait for its first heartbeat."""
    from drorch.clock import SystemClock
    from drorch.lab.cluster_config import guest_serial_log
    from drorch.lab.guest import GuestSpec, domain_xml, wait_heartbeat
    from drorch.virt.libvirt import LibvirtHypervisor

    with lab_instance(lab_name, prefix, subnet) as the_lab:
        layout = the_lab.layout
        spec = GuestSpec(guest_name, memory_mib=memory, cmdline=cmdline)
        log = Path(guest_serial_log(layout, spec.name))
        xml = domain_xml(spec, the_lab.image(), log)
        with LibvirtHypervisor.connect(layout.local_uri(site), site) as hyp:
            hyp.define(xml)
            hyp.start(spec.name)
        beat = wait_heartbeat(log, SystemClock(), timeout=60)
        click.echo(f"{spec.name} runs at {site}: HEARTBEAT {beat} in {log}", err=True)


@lab.command()
@lab_options
@format_option()
def demo(lab_name: str, prefix: str, subnet: str, fmt: str) -> None:
    """The mission's story on the whole lab: up, hurricane migration to B, the weekly
    drill back, a cold failover (site A killed, B's agent takes over), fail back. Prints
    one report; exit 1 when a phase failed."""
    from drorch.lab.demo import LabDemo, demo_report
    from drorch.lab.stack import LabStack
    from drorch.model.loader import load_cluster

    with lab_instance(lab_name, prefix, subnet) as the_lab:
        stack = LabStack(the_lab)
        phases = LabDemo(stack, lambda line: click.echo(line, err=True)).run()
        wait = load_cluster(stack.files.cluster).quorum.takeover_wait
        render(demo_report(phases, wait), fmt)
        if not all(p.ok for p in phases):
            raise SystemExit(1)
