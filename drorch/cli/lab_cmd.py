"""`drorch lab` (also `python -m drorch.lab`): the two-site libvirt lab on this machine.

Needs root. The lab's directory is $DRORCH_LAB_DIR (default .cache/lab in the checkout);
`--name`, `--prefix` and `--subnet` let a second lab run beside the first.
Exit status: 0 done; 1 a step failed (the message says which).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from drorch.cli.output import format_option, render

F = TypeVar("F", bound=Callable[..., Any])


def _lab_options(f: F) -> F:
    f = click.option("--subnet", default="10.77.0", show_default=True,
                     help="First three octets of the sites' /24.")(f)  # fmt: skip
    f = click.option("--prefix", default="", help="Prefix of the namespace names.")(f)
    f = click.option("--name", "lab_name", default="default", show_default=True,
                     help="Lab instance name.")(f)  # fmt: skip
    return f


@contextmanager
def _lab(lab_name: str, prefix: str, subnet: str) -> Iterator[Any]:
    from drorch.lab.lab import Lab
    from drorch.lab.layout import LabLayout
    from drorch.remote.base import RunnerError
    from drorch.remote.local import LocalRunner
    from drorch.virt.base import HypervisorError

    try:
        yield Lab(LabLayout(name=lab_name, prefix=prefix, subnet=subnet), LocalRunner())
    except (RunnerError, OSError, HypervisorError, TimeoutError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group("lab")
def lab() -> None:
    """The two-site lab: network namespaces, one libvirtd per site, tiny QEMU guests."""


@lab.command()
@_lab_options
@format_option()
def up(lab_name: str, prefix: str, subnet: str, fmt: str) -> None:
    """Build (or reuse) the guest image, create the namespaces, start both sites."""
    with _lab(lab_name, prefix, subnet) as the_lab:
        click.echo(f"building/reusing the guest image in {the_lab.layout.image_dir}", err=True)
        image = the_lab.up()
        click.echo(f"guest kernel {image.kernel}\nguest initrd {image.initrd}", err=True)
        render(the_lab.status(), fmt)


@lab.command()
@_lab_options
def down(lab_name: str, prefix: str, subnet: str) -> None:
    """Stop guests, QEMU and the daemons by PID; delete the namespaces."""
    with _lab(lab_name, prefix, subnet) as the_lab:
        for line in the_lab.down():
            click.echo(line, err=True)
        click.echo(f"lab {lab_name} is down", err=True)


@lab.command()
@_lab_options
@format_option()
def status(lab_name: str, prefix: str, subnet: str, fmt: str) -> None:
    """Namespaces, daemons (PIDs), URIs and running guests of each site."""
    with _lab(lab_name, prefix, subnet) as the_lab:
        render(the_lab.status(), fmt)


@lab.command()
@_lab_options
@click.option("--mode", type=click.Choice(["reject", "drop", "link"]), default="drop",
              show_default=True, help="TCP resets, silent drops, or WAN ports down.")  # fmt: skip
def partition(lab_name: str, prefix: str, subnet: str, mode: str) -> None:
    """Cut the WAN between the sites (undo with `heal`)."""
    with _lab(lab_name, prefix, subnet) as the_lab:
        the_lab.partition(mode)
        click.echo(f"WAN cut ({mode}) between {', '.join(the_lab.layout.site_names)}", err=True)


@lab.command()
@_lab_options
def heal(lab_name: str, prefix: str, subnet: str) -> None:
    """Undo any partition."""
    with _lab(lab_name, prefix, subnet) as the_lab:
        the_lab.heal()
        click.echo("WAN healed", err=True)


@lab.command()
@_lab_options
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

    with _lab(lab_name, prefix, subnet) as the_lab:
        text = lab_cluster_yaml(
            the_lab.layout,
            guests or ("labvm",),
            relative_to=relative_to.resolve() if relative_to else None,
        )
        click.echo(text, nl=False)


@lab.command()
@_lab_options
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

    with _lab(lab_name, prefix, subnet) as the_lab:
        layout = the_lab.layout
        spec = GuestSpec(guest_name, memory_mib=memory, cmdline=cmdline)
        log = Path(guest_serial_log(layout, spec.name))
        xml = domain_xml(spec, the_lab.image(), log)
        with LibvirtHypervisor.connect(layout.local_uri(site), site) as hyp:
            hyp.define(xml)
            hyp.start(spec.name)
        beat = wait_heartbeat(log, SystemClock(), timeout=60)
        click.echo(f"{spec.name} runs at {site}: HEARTBEAT {beat} in {log}", err=True)
