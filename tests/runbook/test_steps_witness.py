"""The quorum and check steps against a REAL witness (drorch's QuorumServer on loopback,
mutual TLS, pinned certificates; tests/quorum's fixtures): each node speaks only for its
own site, so site A's node takes and releases A's lease and watches B take it."""

from __future__ import annotations

import pytest

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
"""


def _node(w: InProcessWitness, site: str) -> StepContext:
    return site_ctx(w, site, CLUSTER)


def _run(ctx: StepContext, name: str, check: bool = False, **raw: object) -> StepResult:
    return run_step(ctx, name, check, **raw)


def test_acquire_check_and_release_to_the_other_site(witness: InProcessWitness) -> None:
    a, b = _node(witness, "A"), _node(witness, "B")
    nobody = _run(a, "check.quorum", check=True, site="A")
    assert nobody.message == "nobody holds quorum: would ask for it as A"
    got = _run(a, "quorum.acquire", site="A")
    assert got.message.startswith("A holds quorum (epoch ")
    assert (
        _run(b, "check.quorum", site="A")
        .checked[0]
        .startswith(  # B's node sees A hold it
            f"witness {witness.server}: holder A"
        )
    )
    with pytest.raises(StepFailed) as held:
        _run(b, "check.quorum", site="B")
    assert held.value.code == "no-quorum"
    with pytest.raises(StepFailed) as foreign:
        _run(a, "quorum.acquire", site="B")  # A's certificate cannot ask for B's lease
    assert foreign.value.code == "not-this-site"
    # B's agent (here: a thread asking as B) takes the lease once A released it
    moved = hand_over(a, b, "B", 100)
    assert moved.changed and moved.data["from"] == "A"
    assert moved.message.startswith("quorum released by A, now held by B")
    assert _run(a, "check.quorum", site="B").message.startswith("site B holds quorum")
    with pytest.raises(StepFailed) as not_here:
        _run(a, "quorum.release", to="A")  # B holds it: only B's node can release it
    assert not_here.value.code == "not-holder-here"
