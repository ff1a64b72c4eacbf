"""A witness outdate record that no longer holds (the copy it marks outdated has resynced
from the other copy since: connected, both UpToDate, nothing out of sync) does not block
starting there: `replication.promote` clears it as the lease holder, then promotes.
Found by `lab torture` (run 2: site A killed, B wrote alone and recorded A outdated, then
B's run was rolled back; A resynced from B, and every cluster start at A was refused as
`replica-outdated` with both copies identical). A REAL witness on loopback (mutual TLS);
the replica is a stand-in that reports a fixed state and records the promotion."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

import pytest

from drorch.clock import SystemClock
from drorch.environment import Environment
from drorch.model.loader import parse_cluster_text
from drorch.model.types import Witness
from drorch.quorum.fence import record_outdate, witness_view
from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationStatus,
    Replicator,
    Role,
    VerifyResult,
)
from drorch.runbook.steps.base import StepContext, StepFailed, bind_args, load_step_types
from tests.quorum.conftest import InProcessWitness, make_config, pki

__all__ = ["make_config", "pki"]  # fixtures

CLUSTER = """\
cluster: c1
primary_site: A
sites:
  A: {nodes: [{name: a1}]}
  B: {nodes: [{name: b1}]}
volumes:
  - name: data
    driver: pyrepl
    mode: sync
    size: 64MiB
    port: 7789
    paths: {a1: /dev/null, b1: /dev/null}
"""


class StandIn(Replicator):
    """A secondary replica in a given connection state; promote() is recorded."""

    def __init__(self, connection: ConnState) -> None:
        self.connection = connection
        self.promoted: list[int | None] = []

    def status(self) -> ReplicationStatus:
        return ReplicationStatus(
            "data", Role.PRIMARY if self.promoted else Role.SECONDARY, DiskState.UP_TO_DATE,
            self.connection, "sync", peer_disk=DiskState.UP_TO_DATE, peer_role=Role.SECONDARY,
            epoch=1,
        )  # fmt: skip

    def promote(
        self, epoch: int | None = None, *, force: bool = False, accept_data_loss: bool = False
    ) -> None:
        self.promoted.append(epoch)

    def up(self) -> None: ...
    def down(self) -> None: ...
    def demote(self) -> None: ...
    def connect(self) -> None: ...
    def disconnect(self) -> None: ...
    def resolve_discard_local(self) -> None: ...

    def verify(self) -> VerifyResult:
        raise NotImplementedError


@pytest.fixture
def witness(pki, make_config) -> Iterator[InProcessWitness]:  # type: ignore[no-untyped-def]
    path, port = make_config(lease_ms=5000)
    w = InProcessWitness(pki, port, path, init=True)
    try:
        yield w
    finally:
        w.stop()


def _ctx(w: InProcessWitness, site: str, rep: Replicator | None = None) -> StepContext:
    base = parse_cluster_text(CLUSTER, "c1.yaml")[0]
    name = f"c1-{site.lower()}"
    cluster = dataclasses.replace(
        base,
        witness=Witness(
            w.server, w.pki.fingerprints["server"], str(w.pki.cert(name)), str(w.pki.key(name))
        ),
    )
    env = Environment(clock=SystemClock(), base_dir=w.config.parent)
    if rep is not None:
        env.replicators[("data", "a1")] = rep
    return StepContext(env, cluster)


def _step(ctx: StepContext, name: str, **raw: object) -> object:
    step = load_step_types()[name]
    args, problems = bind_args(step.params, raw)
    assert not problems, problems
    return step.run(ctx, args)


def _outdated_at_a(w: InProcessWitness) -> tuple[str, ...]:
    """B holds the lease and records that only B's copy is current; then A takes it."""
    b = _ctx(w, "B")
    _step(b, "quorum.acquire", site="B")
    assert b.cluster.witness is not None
    answer = record_outdate(b.cluster.witness, "c1", "B", "b1", "data", w.config.parent)
    assert answer.recorded is not None, answer
    a = _ctx(w, "A")
    stop = threading.Event()

    def a_agent() -> None:
        for _ in range(200):  # bounded: 200 x 50 ms
            if stop.wait(0.05):
                return
            try:
                _step(a, "quorum.acquire", site="A")
                return
            except StepFailed:
                continue

    agent = threading.Thread(target=a_agent)
    agent.start()
    try:
        _step(b, "quorum.release", to="A")
    finally:
        stop.set()
        agent.join()
    assert a.cluster.witness is not None
    return witness_view(a.cluster.witness, "c1", "A", "a1", w.config.parent).outdated


def test_a_stale_record_is_cleared_and_the_copy_promoted(witness: InProcessWitness) -> None:
    assert _outdated_at_a(witness) == ("data",)
    rep = StandIn(ConnState.CONNECTED)  # resynced from B since: in sync, both UpToDate
    a = _ctx(witness, "A", rep)
    result = _step(a, "replication.promote", target="data", site="A")
    assert rep.promoted, "not promoted"
    assert "stale outdate record for data at A cleared" in result.message  # type: ignore[attr-defined]
    assert a.cluster.witness is not None
    view = witness_view(a.cluster.witness, "c1", "A", "a1", witness.config.parent)
    assert view.outdated == ()


def test_a_record_on_a_copy_not_connected_still_refuses(witness: InProcessWitness) -> None:
    assert _outdated_at_a(witness) == ("data",)
    rep = StandIn(ConnState.STANDALONE)  # nothing says it caught up
    a = _ctx(witness, "A", rep)
    with pytest.raises(StepFailed) as refused:
        _step(a, "replication.promote", target="data", site="A")
    assert refused.value.code == "promote-refused"
    assert "data at A is outdated" in refused.value.message
    assert rep.promoted == []
    assert a.cluster.witness is not None
    view = witness_view(a.cluster.witness, "c1", "A", "a1", witness.config.parent)
    assert view.outdated == ("data",)  # the record stands
