"""Failover plans read the witness's outdate records: an outdated copy is promoted only
with a data-loss acknowledgement, the reason names the record, the plan states its RPO
and the promotion epoch comes from the witness's grant."""

from __future__ import annotations

import dataclasses

from drorch.decide.plan import plan_failover
from drorch.decide.snapshot import WitnessView
from drorch.decide.steps import messages
from tests.decide.conftest import healthy_at_a
from tests.decide.test_decide_plans import site_a_lost


def promote_reasons(plan: object) -> dict[str, tuple[bool, str]]:
    return {
        s.target: (s.data_loss, s.reason)
        for s in plan.steps  # type: ignore[attr-defined]
        if s.action == "promote"
    }


def test_an_outdated_copy_needs_the_acknowledgement_and_says_why() -> None:
    witness = {"B": WitnessView("B", "B", 8, True, 3000)}
    snap = healthy_at_a(**site_a_lost(), witness=witness, outdated={("dbdata", "B"): 7})
    plan = plan_failover(snap, "B")
    promotes = promote_reasons(plan)
    data_loss, reason = promotes["dbdata"]
    assert data_loss
    assert "dbdata at B is outdated since epoch 7: A wrote alone after the link failed" in reason
    assert "with quorum epoch 8" in reason  # the grant's epoch, not replica epoch + 1
    assert plan.needs_data_loss_ack
    (outdated,) = [b for b in plan.blockers if b.code == "replica-outdated"]
    assert outdated.forceable
    assert outdated.message.startswith(
        "dbdata at B is outdated since epoch 7: A wrote alone after the link failed"
    )
    assert "RPO dbdata: every write at A since epoch 7" in " | ".join(messages(plan.notes))
    assert "promotion epoch 8: the witness's grant to B" in messages(plan.notes)


def test_rpo_zero_only_when_the_witness_was_asked() -> None:
    asked = healthy_at_a(**site_a_lost(), witness={"B": WitnessView("B", None, 4, False, 3000)})
    notes = messages(plan_failover(asked, "B").notes)
    assert "RPO dbdata: 0 (sync, UpToDate, no outdate record at the witness)" in notes
    assert "promotion epoch 5: the witness's next grant (B must hold it)" in notes
    not_asked = healthy_at_a(**site_a_lost(), witness_errors={"B": "QuorumUnavailable: down"})
    notes = messages(plan_failover(not_asked, "B").notes)
    assert any(
        n.startswith("RPO dbdata: 0 only if B's copy is current") and "down" in n for n in notes
    )
    assert not promote_reasons(plan_failover(not_asked, "B"))["dbdata"][0]


def test_the_rpo_note_follows_a_live_mode_switch() -> None:
    # webdata is configured async; switched to sync live, its survivor copy says so
    witness = {"B": WitnessView("B", None, 4, False, 3000)}
    snap = healthy_at_a(**site_a_lost(), witness=witness)
    now = dict(snap.replicas)
    now[("webdata", "B")] = dataclasses.replace(now[("webdata", "B")], disk="UpToDate")
    snap = dataclasses.replace(snap, replicas=now)
    notes = messages(plan_failover(snap, "B").notes)
    assert any(n.startswith("RPO webdata: up to its lag") for n in notes), notes
    now[("webdata", "B")] = dataclasses.replace(now[("webdata", "B")], mode="sync")
    notes = messages(plan_failover(dataclasses.replace(snap, replicas=now), "B").notes)
    assert "RPO webdata: 0 (sync, UpToDate, no outdate record at the witness)" in notes


def test_a_failover_is_blocked_while_the_witness_does_not_answer_the_survivor() -> None:
    """The witness down and site A lost (tests/virt_lab/test_virt_lab_e2e_faults.py): the
    plan used to say "runnable" and the run then stopped at check.fenced."""
    down = healthy_at_a(**site_a_lost(), witness_errors={"B": "QuorumUnavailable: refused"})
    plan = plan_failover(down, "B")
    assert not plan.runnable
    (block,) = [b for b in plan.blockers if b.code == "witness-unreachable"]
    # forceable (the operator may know A is powered off), and then a data-loss step
    assert block.forceable
    assert (
        "QuorumUnavailable: refused" in block.message
        and "nothing confirms A fenced" in block.message
    )
    fenced = site_a_lost(fenced={"A": True}, fenced_reason={"A": "powered off"})
    confirmed = healthy_at_a(**fenced, witness_errors={"B": "QuorumUnavailable: refused"})
    assert "witness-unreachable" not in [b.code for b in plan_failover(confirmed, "B").blockers]
