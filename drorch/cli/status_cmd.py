"""`drorch status`: what the cluster looks like right now, as far as it can be observed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from drorch.cli.loading import cluster_environment, config_option
from drorch.cli.output import format_option, render
from drorch.model.units import format_duration


@click.command()
@config_option
@format_option()
def status(config: Path, fmt: str) -> None:
    """Sites, nodes, quorum timings, replication per volume and node, VM states per site.

    What cannot be observed is listed under `unobserved`; it never aborts the report."""
    from drorch.decide.snapshot import active_site
    from drorch.observe import observe

    with cluster_environment(config) as loaded:
        cluster = loaded.cluster
        obs = observe(cluster, loaded.env)
        snap = obs.snapshot
        site, why = active_site(snap)
        q = cluster.quorum
        data: dict[str, Any] = {
            "cluster": cluster.name,
            "active_site": site,
            "active_because": why,
            "quorum_epoch": snap.epoch,
            "timings": {
                "heartbeat": format_duration(q.heartbeat),
                "lease_timeout": format_duration(q.lease_timeout),
                "switch_delay": format_duration(q.switch_delay),
                "takeover_wait": format_duration(q.takeover_wait),
                "watchdog": f"{cluster.fencing.watchdog.value}"
                f" {format_duration(cluster.fencing.watchdog_timeout)}",
            },
            "sites": [
                {
                    "site": s.name,
                    "node": n.name,
                    "address": n.address,
                    "role": "primary site" if s.name == cluster.primary_site else "DR site",
                    "reachable": snap.is_reachable(s.name),
                }
                for s in cluster.sites
                for n in s.nodes
            ],
            "replication": [
                {
                    "volume": vol,
                    "node": node,
                    "role": st["role"],
                    "disk": st["disk"],
                    "connection": st["connection"],
                    "peer_disk": st["peer_disk"],
                    "out_of_sync": st["out_of_sync_bytes"],
                    "epoch": st["epoch"],
                }
                for (vol, node), st in obs.replication.items()
            ],
            "vms": [
                {
                    "vm": vm.name,
                    "domain": vm.domain,
                    **{s.name: obs.vm_states.get((vm.domain, s.name), "?") for s in cluster.sites},
                    "migratable": vm.migratable,
                }
                for vm in cluster.vms
            ],
            "unobserved": [*loaded.problems, *snap.unobserved],
        }
        if fmt == "table":
            data["timings"] = ", ".join(f"{k} {v}" for k, v in data["timings"].items())
            data["active_site"] = f"{site} ({why})"
            del data["active_because"]
            if not data["unobserved"]:
                data["unobserved"] = "nothing: every driver answered"
            else:
                data["unobserved"] = [{"problem": p} for p in data["unobserved"]]
        render(data, fmt)
