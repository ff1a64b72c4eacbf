"""A witness outdate record that no longer holds (the copy it marks outdated has resynced
from the other copy since: connected, both UpToDate, nothing out of sync) does not block
starting there: `replication.promote` clears it as the lease holder, then promotes.
Found by `lab torture` (run 2: site A killed, B wrote alone and recorded A outdated, then
B's run was rolled back; A resynced from B, and every cluster start at A was refused as
`replica-outdated` with both copies identical). A REAL witness on loopback (mutual TLS);
the replica is a stand-in that reports a fixed state and records the promotion."""

from __future__ import annotations

import pytest

from drorch.quorum.fence import record_outdate, witness_view
from drorch.replication.base import (
    ConnState,
    DiskState,
    ReplicationStatus,
    Replicator,
    Role,
    VerifyResult,
)
from drorch.runbook.steps.base import StepContext, StepFailed, StepResult
from tests.quorum.conftest import InProcessWitness, make_config, pki
from tests.runbook.witness_lab import hand_over, run_step, site_ctx, witness

__all__ = ["make_config", "pki", "witness"]  # fixtures

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


def _ctx(w: InProcessWitness, site: str, rep: Replicator | None = None) -> StepContext:
    ctx = site_ctx(w, site, CLUSTER)
    if rep is not None:
        ctx.env.replicators[("data", "a1")] = rep
    return ctx


def _step(ctx: StepContext, name: str, **raw: object) -> StepResult:
    return run_step(ctx, name, **raw)


def _outdated_at_a(w: InProcessWitness) -> tuple[str, ...]:
    """B holds the lease and records that only B's copy is current; then A takes it."""
    b = _ctx(w, "B")
    _step(b, "quorum.acquire", site="B")
    assert b.cluster.witness is not None
    answer = record_outdate(b.cluster.witness, "c1", "B", "b1", "data", w.config.parent)
    assert answer.recorded is not None, answer
    a = _ctx(w, "A")
    hand_over(b, a, "A", 200)
    assert a.cluster.witness is not None
    return witness_view(a.cluster.witness, "c1", "A", "a1", w.config.parent).outdated


def test_a_stale_record_is_cleared_and_the_copy_promoted(witness: InProcessWitness) -> None:
    assert _outdated_at_a(witness) == ("data",)
    rep = StandIn(ConnState.CONNECTED)  # resynced from B since: in sync, both UpToDate
    a = _ctx(witness, "A", rep)
    result = _step(a, "replication.promote", target="data", site="A")
    assert rep.promoted, "not promoted"
    assert "stale outdate record for data at A cleared" in result.message
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
