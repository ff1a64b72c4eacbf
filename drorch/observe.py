"""Observe the environment into a frozen `decide.snapshot.Snapshot` (the only I/O side).

Nothing here decides anything: every replicator and hypervisor is asked once, and what
cannot be asked is recorded in `unobserved` (and the site marked unreachable when none of
its observations succeeded) instead of aborting the whole picture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drorch.decide.snapshot import ReplicaView, SavedXMLView, Snapshot, WitnessView
from drorch.environment import Environment
from drorch.model.types import Cluster

WITNESS_TIMEOUT = 3.0  # seconds per site; an unreachable witness must not stall status


@dataclass
class Observation:
    """Raw results, kept for `drorch status` (which shows more than decisions need)."""

    snapshot: Snapshot
    replication: dict[tuple[str, str], dict[str, object]] = field(default_factory=dict)
    vm_states: dict[tuple[str, str], str] = field(default_factory=dict)


def _problem(what: str, exc: BaseException) -> str:
    return f"{what}: {type(exc).__name__}: {exc}"


def observe_witness(
    cluster: Cluster, env: Environment
) -> tuple[dict[str, WitnessView], dict[tuple[str, str], int], dict[str, str]]:
    """Ask the witness as each site (its configured client cert): the vote and the
    outdate records for that site. A witness pins each cert for one site, so on a real
    node only its own site answers; the others land in the errors."""
    views: dict[str, WitnessView] = {}
    outdated: dict[tuple[str, str], int] = {}
    errors: dict[str, str] = {}
    witness = cluster.witness
    if witness is None or not witness.cert or not witness.key:
        return views, outdated, errors
    from drorch.quorum.client import QuorumError
    from drorch.quorum.fence import witness_view

    for site in cluster.sites:
        if not site.nodes:
            continue
        try:
            vote = witness_view(
                witness, cluster.name, site.name, site.nodes[0].name, env.base_dir,
                timeout=WITNESS_TIMEOUT,
            )  # fmt: skip
        except (QuorumError, OSError, ValueError) as exc:
            errors[site.name] = f"{type(exc).__name__}: {exc}"
            continue
        views[site.name] = WitnessView(
            site.name, vote.holder, vote.epoch, vote.granted, vote.lease_ms
        )
        since = dict(vote.outdated_since)
        for volume in vote.outdated:
            outdated[(volume, site.name)] = since.get(volume, vote.epoch)
    return views, outdated, errors


def observe_saved_xml(
    cluster: Cluster, env: Environment, vm_states: dict[tuple[str, str], str]
) -> tuple[dict[tuple[str, str], SavedXMLView], list[str]]:
    """Each VM's saved domain XML per site, and whether it is older than the definition
    at the site where the VM runs (compared by digest)."""
    from drorch.virt.xml_store import XMLStore, digest

    store = XMLStore(env.state_dir, cluster, env.base_dir)
    views: dict[tuple[str, str], SavedXMLView] = {}
    problems: list[str] = []
    for vm in cluster.vms:
        running = [
            s.name
            for s in cluster.sites
            if vm_states.get((vm.domain, s.name)) in ("running", "paused")
        ]
        stale: str | None = None
        if len(running) == 1 and running[0] in env.hypervisors:
            try:
                saved = store.read(vm, running[0])
                live = env.hypervisors[running[0]].export_xml(vm.domain)
            except Exception as exc:  # reported; the rest is still observed
                problems.append(_problem(f"saved XML of {vm.name}", exc))
                saved = None
            if saved is not None and digest(saved[0]) != digest(live):
                stale = (
                    f"the definition at {running[0]} differs from the copy saved"
                    f" {_age(env.clock.now() - saved[1].saved_at)} ago"
                )
        for site in cluster.sites:
            try:
                record = store.get(vm, site.name)
            except Exception as exc:
                problems.append(_problem(f"saved XML of {vm.name} for {site.name}", exc))
                continue
            if record is not None:
                views[(vm.name, site.name)] = SavedXMLView(
                    vm.name, site.name, record.path, record.saved_at, record.from_site, stale
                )
    return views, problems


def _age(seconds: float) -> str:
    from drorch.model.units import format_duration

    return format_duration(max(0, round(seconds)))


def _idle_sites(
    cluster: Cluster,
    answered: dict[str, bool],
    replicas: dict[tuple[str, str], ReplicaView],
    vm_states: dict[tuple[str, str], str],
) -> dict[str, bool]:
    """The sites that answered and are seen to run nothing: every replica there observed
    and none primary, every guest's state there read and none running or paused."""
    node_site = {n.name: s.name for s in cluster.sites for n in s.nodes}
    idle: dict[str, bool] = {}
    for s in cluster.sites:
        keys = [
            (v.name, s.name)
            for v in cluster.volumes
            if any(node_site.get(n) == s.name for n in v.paths)
        ]
        guests = [(vm.domain, s.name) for vm in cluster.vms]
        idle[s.name] = (
            answered[s.name]
            and all(k in replicas and replicas[k].role != "primary" for k in keys)
            and all(g in vm_states and vm_states[g] not in ("running", "paused") for g in guests)
        )
    return idle


def ledger_fields(extra: Mapping[str, object]) -> dict[str, Any]:
    """A pyrepl replica's unshipped ledger (pyrepl/unshipped.py) as ReplicaView fields;
    other drivers have none."""
    out: dict[str, Any] = {}
    u, d = extra.get("unshipped"), extra.get("discarded")
    if isinstance(u, dict):
        out["unshipped_writes"] = int(u.get("writes") or 0)
        out["unshipped_first"] = str(u.get("first") or "")
    if isinstance(d, dict):
        from datetime import datetime

        try:
            out["discarded_at"] = datetime.fromisoformat(str(d.get("discarded_at"))).timestamp()
        except ValueError:
            return out
        out["discarded_writes"] = int(d.get("writes") or 0)
        out["discarded_window"] = f"{d.get('first')} to {d.get('last')}"
        out["discarded_uncounted"] = str(d.get("uncounted") or "")
    return out


def observe(cluster: Cluster, env: Environment) -> Observation:
    node_site = {n.name: s.name for s in cluster.sites for n in s.nodes}
    unobserved: list[str] = []
    replicas: dict[tuple[str, str], ReplicaView] = {}
    raw_repl: dict[tuple[str, str], dict[str, object]] = {}
    answered: dict[str, bool] = {s.name: False for s in cluster.sites}
    asked: dict[str, bool] = {s.name: False for s in cluster.sites}
    for vol in cluster.volumes:
        for node in vol.paths:
            site = node_site.get(node, "?")
            asked[site] = True
            replicator = env.replicators.get((vol.name, node))
            if replicator is None:
                unobserved.append(f"replication {vol.name}@{node}: no replicator configured")
                continue
            try:
                st = replicator.status()
            except Exception as exc:  # a broken driver is reported, never fatal to status
                unobserved.append(_problem(f"replication {vol.name}@{node}", exc))
                continue
            answered[site] = True
            raw_repl[(vol.name, node)] = st.as_dict()
            replicas[(vol.name, site)] = ReplicaView(
                volume=vol.name,
                node=node,
                site=site,
                role=st.role.value,
                disk=st.disk.value,
                connection=st.connection.value,
                out_of_sync_bytes=st.out_of_sync_bytes,
                lag_bytes=st.lag_bytes,
                epoch=st.epoch,
                mode=st.mode,
                **ledger_fields(st.extra),
            )
    vm_states: dict[tuple[str, str], str] = {}
    for site_model in cluster.sites:
        site_name = site_model.name
        hyp = env.hypervisors.get(site_name)
        if hyp is None:
            unobserved.append(f"hypervisor {site_name}: not available")
            asked[site_name] = True
            continue
        asked[site_name] = True
        for vm in cluster.vms:
            try:
                vm_states[(vm.domain, site_name)] = hyp.state(vm.domain).value
                answered[site_name] = True
            except Exception as exc:  # reported per VM; the others are still observed
                unobserved.append(_problem(f"VM {vm.name} at {site_name}", exc))
    reachable = {s: answered[s] or not asked[s] for s in answered}
    epoch = max((r.epoch for r in replicas.values()), default=0)
    fenced: dict[str, bool] = {}
    fenced_reason: dict[str, str] = {}
    if cluster.hypervisor.driver == "sim":  # the simulated witness's word on lost sites
        from drorch.virt.sim_world import sim_fencing

        fenced, fenced_reason = sim_fencing(cluster, env, env.clock.now())
    views, outdated, witness_errors = observe_witness(cluster, env)
    if cluster.hypervisor.driver == "sim" and not views and not witness_errors:
        from drorch.virt.sim_world import sim_witness_down

        down = sim_witness_down(cluster, env)
        if down is not None:  # answers as a dead real witness would: to no site
            witness_errors = {s.name: down for s in cluster.sites}
    if views:  # a real witness: its grant to one site confirms a lost other one fenced
        from drorch.decide.fencing import fenced_by_witness

        idle = _idle_sites(cluster, answered, replicas, vm_states)
        by_witness, why = fenced_by_witness(cluster, views, reachable, idle)
        for site, yes in by_witness.items():
            if yes and not fenced.get(site):
                fenced[site], fenced_reason[site] = True, why[site]
    saved_xml, xml_problems = observe_saved_xml(cluster, env, vm_states)
    unobserved += xml_problems
    snapshot = Snapshot(
        cluster=cluster,
        now=env.clock.now(),
        replicas=replicas,
        vm_states=vm_states,
        reachable=reachable,
        fenced=fenced,
        fenced_reason=fenced_reason,
        epoch=epoch,
        unobserved=tuple(unobserved),
        witness=views,
        outdated=outdated,
        witness_errors=witness_errors,
        saved_xml=saved_xml,
        saved_xml_observed=True,
    )
    return Observation(snapshot, raw_repl, vm_states)
