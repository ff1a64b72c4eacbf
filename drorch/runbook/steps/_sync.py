"""Replication helpers shared by the replication and VM families: is a replica in sync,
follow a resync with a progress bar, which VMs hold a volume open at a site."""

from __future__ import annotations

import math

from drorch.model.states import ConnState, VMState, in_sync
from drorch.replication.base import ReplicationStatus
from drorch.runbook.steps._where import peer_status, replica, site_of, status, volume
from drorch.runbook.steps.base import StepContext, StepFailed

POLL = 0.5
WAIT_TIMEOUT = 600.0


def unreplicated_lag(st: ReplicationStatus) -> int:
    """The part of `lag_bytes` that is acknowledged but not yet at the peer: all of an
    async replica's queue; none of a sync replica's once no switch is in progress (its
    queue is writes still waiting for the peer, not yet acknowledged to anyone). A guest
    writing all the time over a WAN keeps a sync queue busy for good: counting it kept
    `check.replication_in_sync` from ever passing during a hurricane move. While an
    async -> sync switch drains (pyrepl: `mode_switch`) the queue holds async writes."""
    if st.mode == "sync" and not st.extra.get("mode_switch"):
        return 0
    return st.lag_bytes


def synced(st: ReplicationStatus, peer: ReplicationStatus | None) -> tuple[bool, int]:
    behind = max(
        st.out_of_sync_bytes,
        unreplicated_lag(st),
        peer.out_of_sync_bytes if peer else 0,
        unreplicated_lag(peer) if peer else 0,
    )
    ok = in_sync(st.disk, st.connection, peer_disk=st.peer_disk, out_of_sync_bytes=behind)
    return ok, behind


def status_line(name: str, node: str, st: ReplicationStatus, behind: int) -> str:
    return (
        f"{name}@{node}: {st.role} {st.disk}/{st.peer_disk} {st.connection} {st.mode},"
        f" {behind} B behind"
    )


def wait_synced(ctx: StepContext, name: str, node: str, timeout: float) -> tuple[str, float]:
    """Follow `name`@`node` until in sync, drawing the resync bar; (last line, seconds)."""
    _, rep = replica(ctx, name, node=node)
    size = max(1, volume(ctx, name).size)
    start = ctx.clock.monotonic()
    line = ""
    for _ in range(math.ceil(timeout / POLL) + 2):  # bounded by the timeout
        st = status(rep, f"{name}@{node}")
        ok, behind = synced(st, peer_status(ctx, name, node))
        line = status_line(name, node, st, behind)
        ctx.progress.update(size - min(size, behind), size, f"{name}: {behind} B to go")
        if ok:
            return line, ctx.clock.monotonic() - start
        if st.connection == ConnState.STANDALONE:
            raise StepFailed("not-in-sync", f"{line}: StandAlone, it cannot catch up (connect it)")
        if ctx.clock.monotonic() - start >= timeout:
            break
        ctx.sleep(POLL)
    raise StepFailed("step-timeout", f"{name} not in sync after {timeout:g}s: {line}")


def users_running(ctx: StepContext, name: str, node: str) -> list[str]:
    site = site_of(ctx, node)
    hyp = ctx.env.hypervisors.get(site)
    out: list[str] = []
    for vm in ctx.cluster.vms:
        if name in vm.volumes and hyp is not None:
            try:
                if hyp.state(vm.domain) in (VMState.RUNNING, VMState.PAUSED):
                    out.append(vm.name)
            except Exception:  # an unanswering site is not evidence of a running guest
                continue
    return out
