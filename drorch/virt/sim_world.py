"""Faults in the simulated world (`drorch sim ...`), so every mission story can be
rehearsed without root: the sim drivers then answer as real ones would.

Markers in the sim state dir, seen by every process:

- `sim-<site>.down` (power-off time inside): the site's hypervisor and replicas do not
  answer; its VMs are off; the other side's replicas lose their peer;
- `sim-partition`: the sites cannot reach each other (replication disconnects; the
  operator still reaches both);
- `sim-witness.down`: the witness answers nobody, so nothing can confirm a lost site is
  fenced.

A powered-off site counts as confirmed fenced once `lease_timeout + switch_delay` have
passed since the power-off with the witness up (its lease expired there, and the witness
would grant the survivor), exactly what the real witness would let the survivor know.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from drorch.environment import Environment
from drorch.model.types import Cluster
from drorch.replication.sim import SimReplicator, resolve_state_dir
from drorch.virt.base import VMState
from drorch.virt.sim import SimHypervisor
from drorch.virt.sim_store import SimStateStore


class SimFaultError(Exception):
    """The fault cannot be applied as asked (unknown site/VM/volume, wrong driver)."""


class SimUsageError(SimFaultError):
    """Asked of something that is not there: an unknown site, VM or volume, or a cluster
    that is not simulated (the CLI's usage exit, 2)."""


def world_dir(cluster: Cluster, env: Environment) -> Path:
    if cluster.hypervisor.driver != "sim":
        raise SimUsageError(
            "drorch sim changes only a simulated cluster (hypervisor.driver: sim); this one"
            f" uses {cluster.hypervisor.driver}"
        )
    return resolve_state_dir(env, cluster.hypervisor.state_dir)


def _events(d: Path, what: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "sim-events.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"at": time.time(), "fault": what}) + "\n")


def _site(cluster: Cluster, site: str) -> str:
    try:
        return cluster.site(site).name
    except KeyError:
        names = ", ".join(s.name for s in cluster.sites)
        raise SimUsageError(f"no site {site!r} (sites: {names})") from None


def power_off(cluster: Cluster, env: Environment, site: str) -> list[str]:
    site = _site(cluster, site)
    d = world_dir(cluster, env)
    hyp = env.hypervisors[site]
    assert isinstance(hyp, SimHypervisor)
    stopped = [] if SimStateStore(d, site).is_down else hyp.power_loss()
    (d / f"sim-{site}.down").write_text(f"{time.time()}\n")
    _events(d, f"power-off {site}")
    return stopped


def power_on(cluster: Cluster, env: Environment, site: str) -> None:
    site = _site(cluster, site)
    d = world_dir(cluster, env)
    hyp = env.hypervisors[site]
    assert isinstance(hyp, SimHypervisor)
    hyp.power_restore()
    nodes = {n.name for n in cluster.site(site).nodes}
    for (_, node), rep in env.replicators.items():
        if node in nodes and isinstance(rep, SimReplicator):
            rep.rebooted()
    _events(d, f"power-on {site}")


def set_marker(cluster: Cluster, env: Environment, name: str, on: bool) -> None:
    d = world_dir(cluster, env)
    d.mkdir(parents=True, exist_ok=True)
    marker = d / name
    if on:
        marker.write_text(f"{time.time()}\n")
    else:
        marker.unlink(missing_ok=True)
    _events(d, f"{name} {'on' if on else 'off'}")


def break_replication(cluster: Cluster, env: Environment, volume: str) -> None:
    d = world_dir(cluster, env)
    try:
        vol = cluster.volume(volume)
    except KeyError:
        raise SimUsageError(f"no volume {volume!r}") from None
    for node in vol.paths:
        env.replicators[(vol.name, node)].disconnect()
    _events(d, f"break-replication {volume}")


def crash_vm(
    cluster: Cluster, env: Environment, name: str, state: VMState = VMState.CRASHED
) -> str:
    """The guest dies where it runs: libvirt's `crashed`, or `shutoff` (its default
    on_crash, or the guest OS powering off). Returns the site."""
    if state not in (VMState.CRASHED, VMState.SHUTOFF):
        raise SimUsageError(f"a guest dies to crashed or shutoff, not {state.value}")
    d = world_dir(cluster, env)
    vm = next((v for v in cluster.vms if name in (v.name, v.domain)), None)
    if vm is None:
        raise SimUsageError(f"no VM {name!r}")
    for s in cluster.sites:
        store = SimStateStore(d, s.name)
        if store.is_down or not store.exists:
            continue
        with store.update() as records:
            rec = records.get(vm.domain)
            if rec is not None and rec["state"] in (VMState.RUNNING.value, VMState.PAUSED.value):
                rec["state"] = state.value
                _events(d, f"crash-vm {vm.name} at {s.name} ({state.value})")
                return s.name
    raise SimFaultError(f"VM {vm.name} is not running at any reachable site")


def sim_witness_down(cluster: Cluster, env: Environment) -> str | None:
    """Why the simulated witness answers nobody (`drorch sim kill-witness`), or None.
    Only where it stands for the witness: a cluster whose witness has client certs is
    asked for real, whatever the simulator says."""
    w = cluster.witness
    if w is None or (w.cert and w.key):
        return None
    try:
        d = world_dir(cluster, env)
    except SimFaultError:
        return None
    if not (d / "sim-witness.down").exists():
        return None
    return "the simulated witness is down: `drorch sim kill-witness`"


def sim_fencing(
    cluster: Cluster, env: Environment, now: float
) -> tuple[dict[str, bool], dict[str, str]]:
    """Which powered-off sites the (simulated) witness lets the survivor count as fenced."""
    fenced: dict[str, bool] = {}
    reasons: dict[str, str] = {}
    try:
        d = world_dir(cluster, env)
    except SimFaultError:
        return fenced, reasons
    witness_down = (d / "sim-witness.down").exists()
    q = cluster.quorum
    for s in cluster.sites:
        marker = d / f"sim-{s.name}.down"
        if not marker.exists():
            continue
        since = marker.stat().st_mtime
        with contextlib.suppress(ValueError, OSError):
            since = float(marker.read_text().strip())
        age = now - since
        need = q.lease_timeout + q.switch_delay
        if witness_down:
            reasons[s.name] = "simulated witness is down: nothing can confirm the lease expired"
        elif age >= need:
            fenced[s.name] = True
            reasons[s.name] = (
                f"simulated: powered off {age:.0f}s ago; its lease expired at the witness and"
                f" switch_delay passed (lease_timeout + switch_delay = {need:g}s)"
            )
        else:
            reasons[s.name] = (
                f"simulated: powered off {age:.0f}s ago, {need - age:.0f}s before fenced"
            )
    return fenced, reasons
