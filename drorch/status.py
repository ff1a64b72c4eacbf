"""`drorch status` as data: the observed picture plus the health reports, built from an
`Observation` (drorch.observe) by the library so the CLI only renders it and exits with
`decide.health.exit_code` (0 healthy, 1 degraded, 2 broken)."""

from __future__ import annotations

from typing import Any

from drorch.decide.currency import currency
from drorch.decide.health import Health, HealthReport, check_health
from drorch.decide.snapshot import Snapshot, active_site
from drorch.model.types import Cluster
from drorch.model.units import format_duration
from drorch.observe import Observation

VERDICT = {0: "healthy", 1: "degraded", 2: "broken"}


def health_reports(obs: Observation, problems: list[str]) -> tuple[HealthReport, ...]:
    """The snapshot's invariants, plus what the environment could not even build."""
    unbuilt = tuple(
        HealthReport(
            Health.ERROR,
            "driver-unavailable",
            f"could not be asked: {p}",
            "fix the driver's configuration or install it; until then status cannot vouch for it",
        )
        for p in problems
    )
    return unbuilt + check_health(obs.snapshot)


def _witness(snap: Snapshot) -> list[dict[str, Any]]:
    """The witness as each site saw it (or why it could not be asked as that site)."""
    rows: list[dict[str, Any]] = []
    for site in sorted({*snap.witness, *snap.witness_errors}):
        view = snap.witness.get(site)
        outdated = sorted(
            f"{v} since epoch {e}" for (v, s), e in snap.outdated.items() if s == site
        )
        rows.append(
            {
                "asked_as": site,
                "holder": view.holder if view else None,
                "epoch": view.epoch if view else None,
                "outdated_here": outdated,
                "error": snap.witness_errors.get(site),
            }
        )
    return rows


def _current(snap: Snapshot, volume: str, site: str) -> str:
    """Per replica: is it guaranteed current, and if not since when / why."""
    ok, why = currency(snap, volume, site)
    return f"{'yes' if ok else 'no'}: {why}"


def status_data(
    cluster: Cluster, obs: Observation, reports: tuple[HealthReport, ...], verdict: int
) -> dict[str, Any]:
    snap = obs.snapshot
    site, why = active_site(snap)
    q = cluster.quorum
    hyp = cluster.hypervisor
    simulated = hyp.driver == "sim"
    node_site = {n.name: s.name for s in cluster.sites for n in s.nodes}
    return {
        "cluster": cluster.name,
        "health": VERDICT[verdict],
        "simulated": (
            "no"
            if not simulated
            else "yes: VMs and replication are the simulator (driver sim); no real guest or disk"
            if hyp.simulates_replication
            else "VMs only: the simulator (driver sim) runs no real guest; replication is real"
        ),
        "active_site": site,
        "active_because": why,
        "quorum_epoch": snap.epoch,
        "witness": _witness(snap),
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
                "driver": "sim" if hyp.simulates_replication else cluster.volume(vol).driver,
                "role": st["role"],
                "disk": st["disk"],
                "connection": st["connection"],
                "peer_disk": st["peer_disk"],
                "out_of_sync": st["out_of_sync_bytes"],
                "epoch": st["epoch"],
                "current": _current(snap, vol, node_site.get(node, "?")),
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
        "problems": [r.as_dict() for r in reports],
    }
