"""Bring a cluster's volumes up, and down, from the cluster file (`drorch repl up|down`).

`up` starts every replica of the chosen volumes on the nodes this machine runs (local
nodes, or the one `node` asked for) through the volume's own driver, and waits until each
pair is connected. It is idempotent: a replica that already answers is left alone.

Day 0 (`initial_primary`): a brand-new pair has no source of truth, so DRBD needs
`primary --force` once. drorch allows it without a data-loss acknowledgement only when it
is provably day 0 — both replicas answer, neither has ever been primary (epoch 0) and
neither holds good data (disk Inconsistent or Diskless) — and refuses otherwise: that
would be promoting one copy over another's writes.

`down` stops secondaries cleanly; a primary is refused unless `demote` is given (then it
is demoted first, as `drbdadm down` would need).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from drorch.environment import Environment
from drorch.model.types import Cluster, Driver, Node, Volume
from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationError,
    Replicator,
    Role,
    UnsafeOperation,
)
from drorch.replication.node_status import volume_replicator
from drorch.wait import wait_until

DAY0_DISKS = (DiskState.INCONSISTENT, DiskState.DISKLESS)


class BringupRefused(UnsafeOperation):
    """Refused as unsafe (exit 3): e.g. a day-0 promotion of a copy that holds data."""


@dataclass
class ReplicaRow:
    volume: str
    node: str
    site: str
    action: str
    role: str = ""
    disk: str = ""
    connection: str = ""


@dataclass
class Bringup:
    """What `up`/`down` did, one row per replica, and the problems that stopped a pair."""

    rows: list[ReplicaRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _pick(cluster: Cluster, volumes: Iterable[str]) -> list[Volume]:
    names = list(volumes)
    known = {v.name for v in cluster.volumes}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"no volume {', '.join(unknown)} (volumes: {', '.join(sorted(known))})")
    chosen = [v for v in cluster.volumes if not names or v.name in names]
    return [v for v in chosen if v.driver is not Driver.DRBD or names]


def _mine(cluster: Cluster, volume: Volume, node: str | None) -> list[tuple[str, Node]]:
    out: list[tuple[str, Node]] = []
    for name in volume.paths:
        site, n = cluster.node(name)
        if (node is None and n.is_local) or n.name == node:
            out.append((site.name, n))
    return out


def _row(volume: str, node: str, site: str, action: str, rep: Replicator) -> ReplicaRow:
    st = rep.status()
    return ReplicaRow(volume, node, site, action, st.role.value, st.disk.value,
                      st.connection.value)  # fmt: skip


def replicas_up(
    cluster: Cluster,
    env: Environment,
    volumes: Iterable[str] = (),
    node: str | None = None,
    initial_primary: str | None = None,
    accept_data_loss: bool = False,
    connect_wait: float = 30.0,
    on_progress: Callable[[str], None] = lambda _: None,
) -> Bringup:
    out = Bringup()
    for volume in _pick(cluster, volumes):
        pair: list[tuple[str, Node, Replicator]] = []
        for site, n in _mine(cluster, volume, node):
            rep = volume_replicator(cluster, volume, n, env)
            try:
                rep.status()
                action = "already up"
            except (ReplicationError, OSError):
                on_progress(f"starting {volume.name} at {n.name}")
                rep.up()
                action = "started"
            pair.append((site, n, rep))
            out.rows.append(_row(volume.name, n.name, site, action, rep))
        if initial_primary is not None:
            _day0(volume, pair, initial_primary, accept_data_loss, env, connect_wait, out)
        if len(pair) == 2 and connect_wait > 0:  # 0: do not wait (the agents' rejoin connects)
            _wait_connected(volume, pair, env, connect_wait, out)
        for row in out.rows:  # show the state the pair settled in, not the first glance
            found = next((r for _, n, r in pair if n.name == row.node), None)
            if row.volume == volume.name and found is not None:
                st = found.status()
                row.role, row.disk, row.connection = (
                    st.role.value,
                    st.disk.value,
                    st.connection.value,
                )
    return out


def _wait_connected(
    volume: Volume,
    pair: list[tuple[str, Node, Replicator]],
    env: Environment,
    limit: float,
    out: Bringup,
) -> None:
    clock = env.clock

    def connected() -> bool:
        return all(r.status().connection is ConnState.CONNECTED for _, _, r in pair)

    if not wait_until(clock, connected, clock.monotonic() + limit, interval=0.2):
        states = ", ".join(f"{n.name} {r.status().connection.value}" for _, n, r in pair)
        out.problems.append(f"{volume.name}: not connected after {limit:g}s ({states})")


def _day0(
    volume: Volume,
    pair: list[tuple[str, Node, Replicator]],
    site: str,
    accept_data_loss: bool,
    env: Environment,
    limit: float,
    out: Bringup,
) -> None:
    here = [(n, r) for s, n, r in pair if s == site]
    if not here:
        out.problems.append(f"{volume.name}: no replica at site {site} on this machine")
        return
    node, rep = here[0]
    states = [(n.name, r.status()) for _, n, r in pair]
    if any(st.role is Role.PRIMARY for _, st in states):
        return  # day 0 is over: something is primary already; leave it
    fresh = len(states) == 2 and all(st.epoch == 0 and st.disk in DAY0_DISKS for _, st in states)
    if not fresh and not accept_data_loss:
        seen = "; ".join(f"{n}: disk {st.disk.value}, epoch {st.epoch}" for n, st in states)
        raise BringupRefused(
            f"{volume.name}: not day 0 ({seen}); making {node.name}'s copy the source would"
            " overwrite the other copy's data (--force --accept-data-loss to do it anyway)"
        )
    rep.promote(force=True, accept_data_loss=True)
    for row in out.rows:
        if row.volume == volume.name and row.node == node.name:
            row.action += ", day-0 primary"
            row.role = Role.PRIMARY.value


def replicas_down(
    cluster: Cluster,
    env: Environment,
    volumes: Iterable[str] = (),
    node: str | None = None,
    demote: bool = False,
    dry_run: bool = False,
) -> Bringup:
    """Stop this machine's replicas (demoting a primary first with `demote`, else it is a
    problem and left running). `dry_run`: the same problems, and rows saying what would
    be done; nothing changes."""
    out = Bringup()
    for volume in _pick(cluster, volumes):
        for site, n in _mine(cluster, volume, node):
            rep = volume_replicator(cluster, volume, n, env)
            try:
                st = rep.status()
            except (ReplicationError, OSError):
                out.rows.append(ReplicaRow(volume.name, n.name, site, "not running"))
                continue
            primary = st.role is Role.PRIMARY
            if primary and not demote:
                out.problems.append(
                    f"{volume.name} is primary at {n.name}: demote it first (or --demote)"
                )
                continue
            if dry_run:
                what = "would demote, then stop" if primary else "would stop"
                out.rows.append(ReplicaRow(volume.name, n.name, site, what))
                continue
            if primary:
                rep.demote()
            pid = st.extra.get("pid") if n.is_local else None
            rep.down()
            _wait_stopped(rep, env, out, f"{volume.name} at {n.name}", pid)
            out.rows.append(ReplicaRow(volume.name, n.name, site, "stopped"))
    return out


def _wait_stopped(
    rep: Replicator, env: Environment, out: Bringup, what: str, pid: object = None
) -> None:
    """`down` returns once the daemon no longer answers and, on this machine, once its
    process has exited (it flushes, then exits), so neither a following `up` nor a script
    that removes the state folder races a daemon on its way out."""

    def gone() -> bool:
        try:
            rep.status()
        except (ReplicationError, OSError):
            return not isinstance(pid, int) or not _alive(pid)
        return False

    clock = env.clock
    if not wait_until(clock, gone, clock.monotonic() + 30.0, interval=0.1):
        out.problems.append(f"{what}: still answering 30s after it was asked to stop")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) has stopped
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False
