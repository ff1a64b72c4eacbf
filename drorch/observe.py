"""Observe the environment into a frozen `decide.snapshot.Snapshot` (the only I/O side).

Nothing here decides anything: every replicator and hypervisor is asked once, and what
cannot be asked is recorded in `unobserved` (and the site marked unreachable when none of
its observations succeeded) instead of aborting the whole picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drorch.decide.snapshot import ReplicaView, Snapshot, WitnessView
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
    )
    return Observation(snapshot, raw_repl, vm_states)
