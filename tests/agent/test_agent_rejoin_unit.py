"""drorch.agent.rejoin on a FakeClock with a scripted replicator: what the agent does
with each replica's status, one action at a time, not repeated within `retry`, and what
it reports. (The real processes: tests/agent/test_agent_rejoin.py.)"""

from __future__ import annotations

import threading
from typing import Any

from drorch.agent.jobs import Job
from drorch.agent.rejoin import Rejoin, daemon_absent
from drorch.decide.rejoin import LeaseView
from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationStatus,
    Replicator,
    Role,
    SplitBrain,
    VerifyResult,
)
from drorch.replication.pyrepl.errors import ControlUnreachable
from drorch.testing.clock import FakeClock

B_HOLDS = LeaseView(reachable=True, holder="B", epoch=5)


class Scripted(Replicator):
    """Status from `state`; every call is recorded; `connect` may raise."""

    def __init__(self, **state: Any) -> None:
        self.name = "data"
        self.state: dict[str, Any] = {
            "role": Role.SECONDARY,
            "connection": ConnState.CONNECTED,
            "epoch": 2,
            "extra": {},
        } | state
        self.calls: list[str] = []
        self.absent = False
        self.connect_error: Exception | None = None

    def status(self) -> ReplicationStatus:
        if self.absent:
            try:
                raise FileNotFoundError(2, "No such file or directory")
            except FileNotFoundError as exc:
                raise ControlUnreachable("no pyrepl daemon answers") from exc
        s = self.state
        return ReplicationStatus(
            "data", s["role"], DiskState.UP_TO_DATE, s["connection"], "sync", epoch=s["epoch"],
            extra=s["extra"],
        )  # fmt: skip

    def up(self) -> None:
        self.calls.append("up")
        self.absent = False

    def down(self) -> None:
        self.calls.append("down")

    def promote(
        self, epoch: int | None = None, *, force: bool = False, accept_data_loss: bool = False
    ) -> None:
        raise AssertionError("the rejoin never promotes")

    def demote(self) -> None:
        self.calls.append("demote")
        self.state["role"] = Role.SECONDARY

    def connect(self) -> None:
        self.calls.append("connect")
        if self.connect_error is not None:
            raise self.connect_error

    def disconnect(self) -> None:
        self.calls.append("disconnect")

    def verify(self) -> VerifyResult:
        return VerifyResult(0, (), 65536)

    def resolve_discard_local(self) -> None:
        self.calls.append("discard-local")
        self.state["extra"] = {}


def _rejoin(rep: Scripted, clock: FakeClock) -> Rejoin:
    return Rejoin(
        lambda: {"data": rep}, site="A", peer="B", clock=clock, retry=1.0, start_job=Job.run_here
    )


def _cycle(r: Rejoin, **kw: Any) -> list[str]:
    args: dict[str, Any] = {
        "lease": B_HOLDS,
        "peer_seen": True,
        "maintenance": False,
        "takeover_running": False,
    }
    return r.cycle(**(args | kw))


def test_an_absent_replicator_is_started_as_secondary() -> None:
    clock, rep = FakeClock(), Scripted()
    rep.absent = True
    r = _rejoin(rep, clock)
    started = _cycle(r)
    assert started == [
        "rejoin: start data: no replicator answers for data here: start it as secondary"
        " (it never starts primary)"
    ]
    assert rep.calls == ["up"]
    _cycle(r)  # the job's end is reported on the next cycle
    assert r.done == ["start data: ok: data started as secondary"]
    assert r.rows["data"]["reason"] == "secondary, Connected, disk UpToDate"


def test_a_stale_primary_is_demoted_and_a_refused_connect_is_not_a_failure() -> None:
    clock, rep = FakeClock(), Scripted(role=Role.PRIMARY, connection=ConnState.STANDALONE)
    rep.connect_error = SplitBrain("split brain: both changed", {}, {})
    r = _rejoin(rep, clock)
    _cycle(r)
    assert rep.calls == ["demote", "connect"]
    _cycle(r)
    assert r.done == ["demote data: ok: data: demoted; connect refused: split brain: both changed"]


def test_an_action_is_not_repeated_within_retry_and_one_runs_at_a_time() -> None:
    clock = FakeClock()
    rep = Scripted(connection=ConnState.STANDALONE, extra={"last_error": "stale-epoch: x"})
    r = _rejoin(rep, clock)
    for _ in range(3):  # bounded: three cycles within one second
        _cycle(r)
        clock.advance(0.25)
    assert rep.calls == ["connect"]
    clock.advance(1.0)
    _cycle(r)
    assert rep.calls == ["connect", "connect"]
    release = threading.Event()

    def held() -> tuple[bool, str]:
        return release.wait(10), "held"

    r.job = Job("busy", held, clock)
    r.job.start()  # an action still running on its thread
    try:
        clock.advance(2.0)
        assert _cycle(r) == [], "a second action started beside a running one"
    finally:
        release.set()
        r.job.join(10)


def test_a_split_brain_copy_superseded_by_the_peer_discards_and_resyncs() -> None:
    clock = FakeClock()
    rep = Scripted(connection=ConnState.STANDALONE, extra={"split_brain": {"reason": "x"}})
    r = _rejoin(rep, clock)
    assert _cycle(r, peer_seen=False) == []  # not while the peer's agent is unseen
    assert r.rows["data"]["action"] == "blocked"
    _cycle(r)
    assert rep.calls == ["discard-local", "connect"]


def test_nothing_is_done_in_maintenance_or_during_a_takeover() -> None:
    for kw in ({"maintenance": True}, {"takeover_running": True}, {"act": False}):
        clock, rep = FakeClock(), Scripted()
        rep.absent = True
        r = _rejoin(rep, clock)
        assert _cycle(r, **kw) == [] and rep.calls == []


def test_only_a_missing_or_refusing_socket_means_absent() -> None:
    def wrapped(cause: BaseException) -> ControlUnreachable:
        try:
            raise cause
        except BaseException as exc:
            try:
                raise ControlUnreachable("x") from exc
            except ControlUnreachable as outer:
                return outer

    assert daemon_absent(wrapped(FileNotFoundError()))
    assert daemon_absent(wrapped(ConnectionRefusedError()))
    assert not daemon_absent(wrapped(TimeoutError()))  # a hung daemon may still write
    assert not daemon_absent(ControlUnreachable("remote: exit 1"))
