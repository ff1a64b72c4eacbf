"""Carry out `drorch.decide.rejoin` for this node's replicas: a returning site comes back
as secondary and resyncs from the site that holds the lease.

Each cycle reads every local replica's status (a control-socket call), decides per
volume, and starts at most one action at a time on its own thread (`Job`): starting a
daemon waits for it to answer, a demotion waits for the peer's acknowledgement, and the
loop must keep renewing and feeding meanwhile. The same action on the same volume is
not repeated within `retry` seconds (the agent's member_timeout: a refused connect is
tried again about as often as membership can change). What each volume is doing — its
role, connection, resync progress and the decision's reason — is in `drorch agent
status` under `replicas`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from drorch.agent.bounded import Bounded
from drorch.agent.jobs import Job
from drorch.clock import Clock
from drorch.decide.rejoin import LeaseView, RejoinAction, RejoinStep, ReplicaView, decide_rejoin
from drorch.replication.base import ReplicationError, ReplicationStatus, Replicator

log = logging.getLogger("drorch.agent")


def daemon_absent(exc: BaseException) -> bool:
    """True when a status call failed because no replicator runs at all (its socket is
    missing or refuses): nothing can write through it. A daemon that hangs, or a remote
    node that cannot be asked, is not known to be absent."""
    cause = exc.__cause__
    return isinstance(cause, FileNotFoundError | ConnectionRefusedError)


def replica_view(
    volume: str, rep: Replicator, bounded: Bounded | None = None
) -> tuple[ReplicaView, ReplicationStatus | None]:
    """`bounded`: the loop's budget (a hung daemon is `unknown (...)`: nothing acts)."""
    try:
        st = rep.status() if bounded is None else bounded.call(f"replicator {volume}", rep.status)
    except Exception as exc:  # an unanswering replicator is reported, never a crash
        if daemon_absent(exc):
            return ReplicaView(volume, running=False), None
        return ReplicaView(volume, running=True, connection=f"unknown ({exc})"), None
    extra = st.extra
    error = extra.get("last_error")
    standalone = st.connection.value == "StandAlone"
    refused = str(error) if standalone and error else None
    view = ReplicaView(
        volume=volume,
        running=True,
        role=st.role.value,
        disk=st.disk.value,
        connection=st.connection.value,
        epoch=st.epoch,
        split_brain=extra.get("split_brain") is not None,
        refused=refused,
        percent_in_sync=st.percent_in_sync,
        resync_eta=st.resync_eta_seconds,
        out_of_sync_bytes=st.out_of_sync_bytes,
        peer_role=st.peer_role.value,
        peer_disk=st.peer_disk.value,
    )
    return view, st


@dataclass
class _Last:
    action: RejoinAction
    at: float


class Rejoin:
    def __init__(
        self,
        replicas: Callable[[], dict[str, Replicator]],
        *,
        site: str,
        peer: str,
        clock: Clock,
        retry: float,
        start_job: Callable[[Job, str], object] = Job.start,
        bounded: Bounded | None = None,
    ) -> None:
        """`replicas()`: volume -> this node's replicator of it. `start_job`: a thread by
        default, `Job.run_here` under a FakeClock. `bounded`: the loop's call budget."""
        self.bounded = bounded
        self.replicas = replicas
        self.site, self.peer = site, peer
        self.clock = clock
        self.retry = retry
        self.start_job = start_job
        self.job: Job | None = None
        self._last: dict[str, _Last] = {}
        self.rows: dict[str, dict[str, object]] = {}
        self.views: list[ReplicaView] = []  # this cycle's, for drorch.agent.restart
        self.done: list[str] = []  # every action finished, in order (status, tests)
        self._discards: dict[str, object] = {}  # volume -> the discard record last logged

    def cycle(
        self,
        *,
        lease: LeaseView | None,
        peer_seen: bool,
        maintenance: bool,
        takeover_running: bool,
        act: bool = True,
    ) -> list[str]:
        """Observe and decide every replica; start at most one action (when `act`).
        Returns what was started, one line each."""
        now = self.clock.monotonic()
        started: list[str] = []
        busy = self.job is not None and self.job.state.running
        if self.job is not None and not busy:
            s = self.job.state
            self.done.append(f"{s.name}: {'ok' if s.ok else 'FAILED'}: {s.message}")
            if not s.ok:
                log.error("rejoin %s failed: %s", s.name, s.message)
            self.job = None
        rows: dict[str, dict[str, object]] = {}
        self.views = []
        for volume, rep in sorted(self.replicas().items()):
            view, st = replica_view(volume, rep, self.bounded)
            self.views.append(view)
            step = decide_rejoin(
                view,
                site=self.site,
                peer=self.peer,
                lease=lease,
                peer_seen=peer_seen,
                maintenance=maintenance,
                takeover_running=takeover_running,
            )
            rows[volume] = _row(view, st, step)
            self._log_discard(volume, st)
            if not act or busy or step.action in (RejoinAction.NONE, RejoinAction.BLOCKED):
                continue
            last = self._last.get(volume)
            if last is not None and last.action is step.action and now - last.at < self.retry:
                continue
            self._last[volume] = _Last(step.action, now)
            self.job = Job(f"{step.action.value} {volume}", _work(rep, step), self.clock)
            self.start_job(self.job, step.reason)
            busy = True
            started.append(f"rejoin: {step.action.value} {volume}: {step.reason}")
            log.info("rejoin: %s %s: %s", step.action.value, volume, step.reason)
        self.rows = rows
        return started

    def _log_discard(self, volume: str, st: ReplicationStatus | None) -> None:
        """Log, once, each time a replica here discarded writes only it had (it was
        resynced from the peer after a failover): the exact RPO the failover cost."""
        d = st.extra.get("discarded") if st is not None else None
        if not isinstance(d, dict) or self._discards.get(volume) == d.get("discarded_at"):
            return
        first_sight = volume not in self._discards
        self._discards[volume] = d.get("discarded_at")
        if first_sight and st is not None and not _fresh(d, self.clock.now()):
            return  # an old record, logged by an earlier agent run
        log.warning(
            "rejoin: %s at %s discarded %s write(s) (%s bytes) acknowledged here from %s to %s"
            " that %s never received: the failover's RPO%s",
            volume, self.site, d.get("writes"), d.get("bytes"), d.get("first"), d.get("last"),
            self.peer,
            f" (at least: {d['uncounted']})" if d.get("uncounted") else "",
        )  # fmt: skip


def _work(rep: Replicator, step: RejoinStep) -> Callable[[], tuple[bool, str]]:
    def work() -> tuple[bool, str]:
        a = step.action
        if a is RejoinAction.START:
            rep.up()
            return True, f"{step.volume} started as secondary"
        done = ""
        if a is RejoinAction.DEMOTE:
            rep.demote()
            done = "demoted; "
        elif a is RejoinAction.DISCARD_LOCAL:
            rep.resolve_discard_local()
            done = "local changes discarded; "
        try:
            rep.connect()
        except ReplicationError as exc:  # refused again: the next cycle decides afresh
            return True, f"{step.volume}: {done}connect refused: {exc}"
        return True, f"{step.volume}: {done}connecting to resync"

    return work


def _fresh(record: dict[str, object], now: float, within: float = 600.0) -> bool:
    from datetime import datetime

    try:
        at = datetime.fromisoformat(str(record.get("discarded_at"))).timestamp()
    except ValueError:
        return False
    return now - at < within


def _row(view: ReplicaView, st: ReplicationStatus | None, step: RejoinStep) -> dict[str, object]:
    row: dict[str, object] = {
        "role": view.role,
        "disk": view.disk,
        "connection": view.connection,
        "epoch": view.epoch,
        "percent_in_sync": view.percent_in_sync,
        "resync_eta_seconds": view.resync_eta,
        "action": step.action.value,
        "reason": step.reason,
    }
    if st is not None:
        for key in ("unshipped", "discarded"):  # pyrepl's ledger (writes only one side has)
            if st.extra.get(key):
                row[key] = st.extra[key]
        resync = st.extra.get("resync")
        if isinstance(resync, dict):
            row["resync"] = {k: resync.get(k) for k in ("total_bytes", "done_bytes", "finished")}
    return row
