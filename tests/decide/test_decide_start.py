"""A cluster that runs nowhere is started again (drorch.decide.start): the plan, and when
an agent starts it. Reasons asserted."""

from __future__ import annotations

import dataclasses

import pytest

from drorch.decide.agent import TakeoverAction
from drorch.decide.rejoin import ReplicaView as LocalReplica
from drorch.decide.snapshot import Snapshot, WitnessView
from drorch.decide.start import StartView, decide_start, plan_start, runs_nowhere
from drorch.decide.steps import Action
from drorch.model.types import FailoverMode
from tests.decide.conftest import cluster, replica


def stopped(**overrides: object) -> Snapshot:
    """Both volumes secondary and in sync at both sites, no guest running; the witness
    answers as A with nobody holding (epoch 6)."""
    fields: dict[str, object] = {
        "cluster": cluster(),
        "replicas": {
            (v, s): replica(v, s, "secondary", epoch=5)
            for v in ("dbdata", "webdata")
            for s in ("A", "B")
        },
        "vm_states": {(d, s): "shutoff" for d in ("db-vm", "web") for s in ("A", "B")},
        "reachable": {"A": True, "B": True},
        "epoch": 5,
        "witness": {"A": WitnessView("A", None, 6, False, 10000)},
    }
    fields.update(overrides)
    return Snapshot(**fields)  # type: ignore[arg-type]


def test_the_plan_promotes_at_the_witness_epoch_then_starts_in_order() -> None:
    plan = plan_start(stopped(), "A")
    assert plan.kind == "start" and plan.runnable, plan.blockers
    assert [(s.action, s.target) for s in plan.steps][:4] == [
        (Action.PROMOTE, "dbdata"),
        (Action.PROMOTE, "webdata"),
        (Action.START_VM, "db"),
        (Action.START_VM, "web"),
    ]
    assert {s.params["epoch"] for s in plan.steps if s.action is Action.PROMOTE} == {7}
    assert plan.steps[2].reason.startswith("db runs nowhere: start it at A")
    assert any(s.action is Action.START_SERVICE and s.target == "proxy" for s in plan.steps)
    assert [n.code for n in plan.notes][:2] == ["runs-nowhere", "promotion-epoch"]
    assert not plan.needs_data_loss_ack


def _codes(snapshot: Snapshot, site: str = "A") -> list[tuple[str, bool]]:
    return [(b.code, b.forceable) for b in plan_start(snapshot, site).blockers]


def test_anything_primary_or_running_blocks_it() -> None:
    s = stopped()
    reps = dict(s.replicas)
    reps[("dbdata", "B")] = replica("dbdata", "B", "primary", epoch=5)
    assert _codes(dataclasses.replace(s, replicas=reps)) == [("volume-primary", False)]
    states = dict(s.vm_states)
    states[("web", "B")] = "paused"
    assert _codes(dataclasses.replace(s, vm_states=states)) == [("vm-running", False)]


def test_an_unreachable_site_blocks_it_the_lost_peer_is_a_failover() -> None:
    plan = plan_start(stopped(reachable={"A": True, "B": False}), "A")
    assert [b.code for b in plan.blockers] == ["site-unreachable"]
    assert "cannot be seen to run nothing; if it was lost, that is a failover" in (
        plan.blockers[0].message
    )


def test_a_copy_behind_the_other_sites_is_forceable_and_needs_the_data_loss_ack() -> None:
    s = stopped()
    reps = dict(s.replicas)
    reps[("dbdata", "A")] = replica("dbdata", "A", "secondary", disk="Outdated", epoch=5)
    plan = plan_start(dataclasses.replace(s, replicas=reps), "A")
    assert [(b.code, b.forceable) for b in plan.blockers] == [("replica-behind", True)]
    assert "start at B, or wait for the resync" in plan.blockers[0].message
    assert plan.needs_data_loss_ack  # its promote step is a data-loss step


def test_an_outdate_record_on_a_copy_now_in_sync_with_the_other_is_stale() -> None:
    """The record says only B's copy of dbdata is current, but A's copy has resynced from
    B since and both are connected and in sync: starting at A loses nothing (the
    promotion clears the record). Not connected, the record blocks as before."""
    plan = plan_start(stopped(outdated={("dbdata", "A"): 2}), "A")
    assert plan.runnable and not plan.needs_data_loss_ack, plan.blockers
    s = stopped(outdated={("dbdata", "A"): 2})
    reps = dict(s.replicas)
    reps[("dbdata", "A")] = replica("dbdata", "A", "secondary", conn="StandAlone", epoch=5)
    codes = _codes(dataclasses.replace(s, replicas=reps))
    assert ("replica-outdated", True) in codes, codes


def test_the_witness_unreachable_is_forceable() -> None:
    s = stopped(witness={}, witness_errors={"A": "QuorumUnavailable: refused"})
    assert _codes(s) == [("witness-unreachable", True)]


def test_an_unknown_site() -> None:
    assert _codes(stopped(), "C") == [("unknown-site", False)]


def lr(**kw: object) -> LocalReplica:
    base: dict[str, object] = {
        "volume": "data",
        "running": True,
        "role": "secondary",
        "disk": "UpToDate",
        "connection": "Connected",
        "peer_role": "secondary",
        "peer_disk": "UpToDate",
    }
    base.update(kw)
    return LocalReplica(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("replicas", "primary", "idle"),
    [
        ([lr()], (), True),
        ([lr(), lr(volume="logs")], (), True),
        ([], (), False),  # nothing observed is not idle
        ([lr()], ("vm web",), False),
        ([lr(peer_role="primary")], (), False),  # it runs at the peer
        ([lr(peer_role="unknown")], (), False),
        ([lr(connection="Connecting", peer_role="unknown", peer_disk="DUnknown")], (), False),
        ([lr(disk="Outdated")], (), False),
        ([lr(peer_disk="Inconsistent")], (), False),
        ([lr(connection="SyncTarget")], (), False),
        ([lr(running=False)], (), False),
        ([lr(out_of_sync_bytes=4096)], (), False),
    ],
)
def test_runs_nowhere_only_when_every_replica_says_so(
    replicas: list[LocalReplica], primary: tuple[str, ...], idle: bool
) -> None:
    assert (runs_nowhere(replicas, primary) is not None) is idle


def view(**kw: object) -> StartView:
    base: dict[str, object] = {
        "site": "A",
        "now": 100.0,
        "preferred": True,
        "has_quorum": True,
        "peer_seen": True,
        "witness_reachable": True,
        "lease_holder": None,
        "maintenance": False,
        "busy": None,
        "taking_over": False,
        "idle_since": 80.0,
        "idle_reason": "every replica here (data) is secondary",
    }
    base.update(kw)
    return StartView(**base)  # type: ignore[arg-type]


AUTO = FailoverMode.AUTOMATIC


@pytest.mark.parametrize(
    ("overrides", "action", "reason"),
    [
        (
            {},
            TakeoverAction.RUN,
            "starting the cluster at site A, because the cluster has run"
            " nowhere for 20.0s (every replica here (data) is secondary)",
        ),
        (
            {"idle_since": 90.0},
            TakeoverAction.WAIT,
            "the cluster runs nowhere (every replica"
            " here (data) is secondary) for 10.0s; site A (the configured primary site) starts"
            " it after 15s",
        ),
        (
            {"preferred": False},
            TakeoverAction.WAIT,
            "the cluster runs nowhere (every replica"
            " here (data) is secondary) for 20.0s; site A (not the configured primary site)"
            " starts it after 30s",
        ),
        ({"preferred": False, "idle_since": 60.0}, TakeoverAction.RUN, "starting the cluster"),
        ({"idle_since": None}, TakeoverAction.NONE, "the cluster runs (or may run) somewhere"),
        ({"maintenance": True}, TakeoverAction.NONE, "maintenance mode: the cluster stays"),
        ({"taking_over": True}, TakeoverAction.NONE, "a takeover owns the cluster"),
        ({"busy": "r-17"}, TakeoverAction.NONE, "drorch run r-17 holds the cluster"),
        (
            {"peer_seen": False},
            TakeoverAction.NONE,
            "the peer is not seen: a lost peer is a takeover, not a start",
        ),
        ({"has_quorum": False}, TakeoverAction.NONE, "no quorum here"),
        ({"witness_reachable": False}, TakeoverAction.NONE, "the witness does not answer"),
        (
            {"lease_holder": "B"},
            TakeoverAction.NONE,
            "site B holds the lease: it runs or starts the cluster",
        ),
        # a restarted witness names this site as its recorded holder during its grace
        ({"lease_holder": "A"}, TakeoverAction.RUN, "starting the cluster at site A"),
        ({"start_running": True}, TakeoverAction.RUNNING, "the cluster-start runbook is running"),
        (
            {"start_failed": "plan-blocked"},
            TakeoverAction.REFUSED,
            "the cluster-start runbook failed (plan-blocked); the agent does not retry",
        ),
    ],
)
def test_decide_start(overrides: dict[str, object], action: TakeoverAction, reason: str) -> None:
    got = decide_start(view(**overrides), takeover_wait=15.0, mode=AUTO)
    assert got.action is action, got
    assert got.reason.startswith(reason), got.reason


def test_manual_mode_says_how_to_start_it() -> None:
    got = decide_start(view(), takeover_wait=15.0, mode=FailoverMode.MANUAL)
    assert got.action is TakeoverAction.READY
    assert got.reason.endswith("start it with `drorch start --to A`")
