"""`drorch vm sync-xml` and `drorch vm dumpxml`: each VM's domain XML, saved per site in
the state directory (drorch/virt/xml_store.py) so the other site can define it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from drorch.cli.loading import config_option
from drorch.cli.output import format_option, render
from drorch.cli.vm_common import cluster_vms
from drorch.virt.cluster_vms import VMOperationRefused


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


@click.command("sync-xml")
@click.argument("names", nargs=-1)
@config_option
@click.option("--site", help="Save the definition at this site (default: where each VM runs).")
@format_option()
def sync_xml_cmd(names: tuple[str, ...], config: Path, site: str | None, fmt: str) -> None:
    """Save the domain XML of VMs NAMES (default: every VM that runs) for every site,
    mapped for each: disk sources to that site's replica, networks, libvirt URIs.
    Migrations save it too; `status` warns when a saved copy is older than what runs."""
    rows: list[dict[str, Any]] = []
    with cluster_vms(config) as vms:
        chosen = [vms.vm(n) for n in names] or list(vms.cluster.vms)
        for vm in chosen:
            try:
                saved = vms.sync_xml(vm.name, site)
            except VMOperationRefused:
                if names:
                    raise
                rows.append({"vm": vm.name, "site": "-", "from": "-", "path": "not running"})
                continue
            rows += [
                {
                    "vm": s.vm,
                    "site": s.site,
                    "from": s.from_site,
                    "path": s.path,
                    "changes": list(s.changes) if fmt != "table" else len(s.changes),
                }
                for s in saved
            ]
    render(rows, fmt)


@click.command("dumpxml")
@click.argument("name")
@click.option("--site", required=True, help="The site whose definition to show.")
@config_option
@click.option(
    "--live", is_flag=True, help="The definition the site's hypervisor has now, not the saved one."
)
@format_option()
def dumpxml_cmd(name: str, site: str, config: Path, live: bool, fmt: str) -> None:
    """The domain XML drorch would define VM NAME with at --site: the copy saved for it
    (mapped for that site), or with --live what that site's hypervisor holds now. With
    --format json|yaml also when and from where it was saved."""
    with cluster_vms(config) as vms:
        vm = vms.vm(name)
        site = vms.site_name(site)
        if live:
            xml = vms.hypervisor(site).export_xml(vm.domain)
            data: dict[str, object] = {"vm": vm.name, "site": site, "source": "live"}
        else:
            saved = vms.xml_store.read(vm, site)
            if saved is None:
                raise click.ClickException(
                    f"no XML of {vm.name} is saved for {site}: `drorch vm sync-xml {vm.name}`"
                    " saves it (migrations do too)"
                )
            xml, record = saved
            data = {
                "vm": vm.name,
                "site": site,
                "source": "saved",
                "path": record.path,
                "saved_at": _when(record.saved_at),
                "from_site": record.from_site,
                "changes": list(record.changes),
            }
    if fmt == "table":
        click.echo(xml.rstrip("\n"))
        return
    render({**data, "xml": xml}, fmt)
