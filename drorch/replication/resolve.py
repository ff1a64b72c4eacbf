"""Split-brain resolution by site: `drorch repl resolve -c CONFIG --volume VOL --discard SITE`.

What a DRBD operator does by hand (`drbdadm connect --discard-my-data` on the victim,
`drbdadm connect` on the survivor), for any driver, through the `Replicator` seam:

1. `pick_sides()` finds the volume's node at the discarded site (the victim) and at the
   other site (the survivor). Pure over the model.
2. `decide_resolve()` takes both sides' observed status and returns a `ResolvePlan`:
   coded reports (`ReportItem`) for every reason to refuse, a reason a person can read,
   and what the victim would lose. Pure: no I/O, no clock.
3. `carry_out()` acts on a plan that may run: `resolve_discard_local()` on the victim,
   `connect()` on the survivor when it is StandAlone, then (optionally) follows the
   resync until both sides are Connected and UpToDate, bounded by `resync_wait` on the
   injected clock.

Telling a split brain from a plain disconnect: drivers that remember the last handshake's
verdict report it as `status.extra["split_brain"]` (pyrepl, sim): set means split brain,
present but empty means the side is StandAlone for another reason. Drivers that do not
(DRBD: `drbdsetup status` has no such field; DRBD logs it to the kernel) are judged from
both sides: after a split brain both are StandAlone with different current generations.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drorch.clock import Clock
from drorch.model.field_values import suggestion
from drorch.model.reports import ReportItem, Severity
from drorch.model.states import in_sync
from drorch.model.types import Cluster, Node, Volume
from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationError,
    ReplicationStatus,
    Replicator,
    Role,
)
from drorch.wait import wait_until

RESYNC_POLL = 0.5  # seconds between two looks at a running resync


class UnknownTarget(ValueError):
    """The volume or site is not in the cluster, or the volume has no replica there."""


@dataclass(frozen=True)
class SitePair:
    """The volume's replica at the discarded site (victim) and at the other (survivor)."""

    volume: Volume
    victim_site: str
    victim: Node
    survivor_site: str
    survivor: Node


def _did_you_mean(word: str, choices: list[str]) -> str:
    same = [c for c in choices if c.lower() == word.lower()]  # `b` for site `B`
    return f"; did you mean {same[0]!r}?" if same else suggestion(word, choices)


def pick_sides(cluster: Cluster, volume_name: str, discard_site: str) -> SitePair:
    """Raises UnknownTarget with a did-you-mean when a name is not in the cluster."""
    try:
        volume = cluster.volume(volume_name)
    except KeyError:
        names = [v.name for v in cluster.volumes]
        raise UnknownTarget(
            f"no volume {volume_name!r} in cluster {cluster.name} (volumes: "
            f"{', '.join(names) or 'none'}){_did_you_mean(volume_name, names)}"
        ) from None
    sites = [s.name for s in cluster.sites]
    if discard_site not in sites:
        hint = _did_you_mean(discard_site, sites)
        try:
            node_site, _ = cluster.node(discard_site)
            hint = f"; {discard_site} is a node: --discard takes its site, {node_site.name}"
        except KeyError:
            pass
        raise UnknownTarget(
            f"no site {discard_site!r} in cluster {cluster.name} (sites: {', '.join(sites)}){hint}"
        )
    other = cluster.other_site(discard_site).name
    victim = _replica_at(cluster, volume, discard_site)
    survivor = _replica_at(cluster, volume, other)
    return SitePair(volume, discard_site, victim, other, survivor)


def _replica_at(cluster: Cluster, volume: Volume, site: str) -> Node:
    nodes = [n for n in cluster.site(site).nodes if n.name in volume.paths]
    if len(nodes) != 1:
        held = ", ".join(f"{n} (site {cluster.node(n)[0].name})" for n in volume.paths)
        count = "no replica" if not nodes else f"{len(nodes)} replicas"
        raise UnknownTarget(f"volume {volume.name} has {count} at site {site} (held on {held})")
    return nodes[0]


@dataclass(frozen=True)
class Observed:
    """One side as seen just before deciding: its status, or why it could not be asked."""

    site: str
    node: str
    status: ReplicationStatus | None
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.node} (site {self.site})"


@dataclass(frozen=True)
class ResolvePlan:
    volume: str
    victim: Observed
    survivor: Observed
    reason: str
    reports: tuple[ReportItem, ...] = ()

    @property
    def blocking(self) -> list[ReportItem]:
        return [r for r in self.reports if r.severity is Severity.ERROR]

    @property
    def may_run(self) -> bool:
        return not self.blocking

    @property
    def only_data_loss(self) -> bool:
        """Refused only because the data loss was not accepted (UnsafeOperation)."""
        return bool(self.blocking) and all(r.forceable for r in self.blocking)

    def would_discard(self) -> dict[str, Any]:
        """What the victim loses and the survivor keeps, as the statuses report it."""
        out: dict[str, Any] = {}
        for key, side in (("discarded", self.victim), ("kept", self.survivor)):
            st = side.status
            out[key] = {
                "site": side.site,
                "node": side.node,
                "generation": copy.deepcopy(dict(st.generation)) if st else None,
                "out_of_sync_bytes": st.out_of_sync_bytes if st else None,
            }
        return out


def split_brain_verdict(victim: ReplicationStatus, survivor: ReplicationStatus) -> str | None:
    """Why this is a split brain, or None when the victim's StandAlone is something else
    (the caller has checked that the victim is StandAlone)."""
    flags = [st.extra["split_brain"] for st in (victim, survivor) if "split_brain" in st.extra]
    if flags:
        seen = next((f for f in flags if f), None)
        if seen is None:
            return None
        why = seen.get("reason") if isinstance(seen, Mapping) else None
        return f"the driver detected split brain at the last handshake ({why or 'both changed'})"
    if survivor.connection is not ConnState.STANDALONE:
        return None
    mine, theirs = victim.generation.get("current"), survivor.generation.get("current")
    if mine is not None and mine == theirs:
        return None
    ids = f" ({mine} vs {theirs})" if mine is not None and theirs is not None else ""
    return f"both sides are StandAlone with different current generations{ids}"


def _current(st: ReplicationStatus) -> str:
    gen = st.generation
    parts = [f"{k}={gen[k]}" for k in ("current", "bitmap", "base") if gen.get(k) is not None]
    return ", ".join(parts) or "unknown generation"


def decide_resolve(
    volume: str, victim: Observed, survivor: Observed, *, accept_data_loss: bool
) -> ResolvePlan:
    """Every reason to refuse, as coded reports. When nothing else stands in the way,
    `data-loss` says what the victim loses: an error until accept_data_loss downgrades it
    to a warning (the only forceable report)."""
    reports: list[ReportItem] = []

    def error(code: str, message: str, *, forceable: bool = False) -> None:
        reports.append(ReportItem(code, message, forceable=forceable))

    for code, side in (("victim-unreachable", victim), ("survivor-unreachable", survivor)):
        if side.status is None:
            error(code, f"cannot ask {side.label} for the state of {volume}: {side.error}")
    v, s = victim.status, survivor.status
    if v is None or s is None:
        return ResolvePlan(volume, victim, survivor, "a side could not be asked", tuple(reports))
    evidence = None
    if v.connection is not ConnState.STANDALONE:
        hint = {
            ConnState.CONNECTING: "it is waiting for its peer; connect the peer and any "
            "resync runs by itself",
            ConnState.CONNECTED: "the sides are connected; there is nothing to resolve",
            ConnState.SYNC_SOURCE: "a resync is running; there is nothing to resolve",
            ConnState.SYNC_TARGET: "a resync is running; there is nothing to resolve",
        }[v.connection]
        error(
            "not-split-brain",
            f"{volume} is {v.connection.value} on {victim.label}, not StandAlone after a "
            f"split brain: {hint}",
        )
    else:
        evidence = split_brain_verdict(v, s)
        if evidence is None:
            last = v.extra.get("last_error")
            error(
                "not-split-brain",
                f"{volume} is StandAlone on {victim.label} but not in split brain (peer "
                f"{survivor.label} is {s.connection.value}"
                f"{f', last error: {last}' if last else ''}): a plain disconnect is fixed by "
                "connect, not resolve",
            )
    if v.role is Role.PRIMARY:
        error(
            "victim-primary",
            f"{volume} is primary on {victim.label}: stop whatever uses it there (VM, "
            "filesystem) and demote it first; resolve never demotes a primary",
        )
    if s.disk is not DiskState.UP_TO_DATE:
        error(
            "survivor-not-up-to-date",
            f"{volume} is {s.disk.value} on {survivor.label}: the side that is kept must be "
            "UpToDate to resync the other from it",
        )
    if not reports:  # resolvable: what it costs, refused until the loss is accepted
        loss = (
            f"resolving discards {volume}'s changes at site {victim.site} on {victim.node} "
            f"({_current(v)}; {v.out_of_sync_bytes} bytes out of sync) and resyncs it from "
            f"{survivor.node} at site {survivor.site} ({_current(s)})"
        )
        if accept_data_loss:
            reports.append(ReportItem("data-loss", loss, severity=Severity.WARNING, forceable=True))
        else:
            error("data-loss", f"{loss}; repeat with --accept-data-loss", forceable=True)
    reason = (
        f"{volume}: split brain between {victim.label} and {survivor.label}: {evidence}; "
        f"discard {victim.node}'s changes and resync it from {survivor.node}"
        if evidence
        else f"{volume}: no split brain to resolve"
    )
    return ResolvePlan(volume, victim, survivor, reason, tuple(reports))


@dataclass
class ResolveOutcome:
    """What carry_out() did (`steps`, one line each) and both sides' final status."""

    steps: list[str] = field(default_factory=list)
    victim: ReplicationStatus | None = None
    survivor: ReplicationStatus | None = None
    settled: bool = False  # both Connected and UpToDate
    waited: bool = False


def settled(victim: ReplicationStatus, survivor: ReplicationStatus) -> bool:
    """Both sides Connected and UpToDate (`drorch.model.states.in_sync` of each)."""
    return in_sync(victim.disk, victim.connection) and in_sync(survivor.disk, survivor.connection)


def carry_out(
    plan: ResolvePlan,
    victim: Replicator,
    survivor: Replicator,
    *,
    clock: Clock,
    resync_wait: float | None,
    on_progress: Callable[[ReplicationStatus], None] | None = None,
) -> ResolveOutcome:
    """Act on a plan that may run. `resync_wait` None: return once both sides were told;
    else follow the resync for at most that many seconds (`settled` says if it ended).
    Replication errors propagate (SplitBrain if the survivor still sees one)."""
    if not plan.may_run:
        raise ValueError(f"refusing to act on a refused plan: {plan.blocking[0]}")
    out = ResolveOutcome()
    v, s = plan.victim, plan.survivor
    victim.resolve_discard_local()
    out.steps.append(f"{v.label}: changes discarded; it resyncs from {s.node} on connect")
    survivor_state = survivor.status()
    if survivor_state.connection is ConnState.STANDALONE:
        survivor.connect()
        out.steps.append(f"{s.label}: connect (it was StandAlone)")
    else:
        out.steps.append(f"{s.label}: already {survivor_state.connection.value}")
    out.victim, out.survivor = victim.status(), survivor.status()
    out.settled = settled(out.victim, out.survivor)
    if resync_wait is None:
        return out
    out.waited = True
    if on_progress is not None:  # at least once: a resync may be over before the first poll
        on_progress(out.victim)

    def poll() -> bool:
        out.victim, out.survivor = victim.status(), survivor.status()
        if on_progress is not None:
            on_progress(out.victim)
        out.settled = settled(out.victim, out.survivor)
        return out.settled

    deadline = clock.monotonic() + resync_wait
    if not out.settled and resync_wait > 0:
        clock.sleep(min(RESYNC_POLL, resync_wait))  # just asked: ask again after a pause
        wait_until(clock, poll, deadline, interval=RESYNC_POLL)
    if out.settled:
        out.steps.append(f"{v.label}: resynced from {s.node}; both UpToDate and Connected")
    return out


def resync_progress(st: ReplicationStatus) -> tuple[int, int, float | None]:
    """(done, total, eta seconds) of a running resync as the status reports it: bytes
    when the driver says (pyrepl `extra.resync`), else percent in sync in hundredths."""
    resync = st.extra.get("resync")
    if isinstance(resync, Mapping) and resync.get("total_bytes"):
        eta = resync.get("eta_seconds")
        return int(resync.get("done_bytes") or 0), int(resync["total_bytes"]), eta
    return int(st.percent_in_sync * 100), 10_000, st.resync_eta_seconds


def observe(site: str, node: str, replicator: Callable[[], Replicator]) -> Observed:
    """Ask one side (building its replicator may fail too); a failure becomes `error`."""
    try:
        return Observed(site, node, replicator().status())
    except ReplicationError as exc:
        return Observed(site, node, None, f"{type(exc).__name__}: {exc}")
