"""The quorum and check steps against a REAL witness (drorch's QuorumServer on loopback,
mutual TLS, pinned certificates; tests/quorum's fixtures): each node speaks only for its
own site, so site A's node takes and releases A's lease and watches B take it."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

import pytest

from drorch.clock import SystemClock
from drorch.environment import Environment
from drorch.model.loader import parse_cluster_text
from drorch.model.types import Witness
from drorch.runbook.steps.base import (
    StepContext,
    StepFailed,
    StepResult,
    bind_args,
    load_step_types,
)
from tests.quorum.conftest import InProcessWitness, make_config, pki

__all__ = ["make_config", "pki"]  # fixtures


@pytest.fixture
def witness(pki, make_config) -> Iterator[InProcessWitness]:  # type: ignore[no-untyped-def]
    """A witness whose lease (5 s) outlasts the test's steps without an agent renewing it."""
    path, port = make_config(lease_ms=5000)
    w = InProcessWitness(pki, port, path, init=True)
    try:
        yield w
    finally:
        w.stop()


CLUSTER = """\
cluster: c1
primary_site: A
sites:
  A: {nodes: [{name: a1}]}
  B: {nodes: [{name: b1}]}
"""


def _node(w: InProcessWitness, site: str) -> StepContext:
    base = parse_cluster_text(CLUSTER, "c1.yaml")[0]
    name = f"c1-{site.lower()}"
    cluster = dataclasses.replace(
        base,
        witness=Witness(
            w.server, w.pki.fingerprints["server"], str(w.pki.cert(name)), str(w.pki.key(name))
        ),
    )
    env = Environment(clock=SystemClock(), base_dir=w.config.parent)
    return StepContext(env, cluster)


def _run(ctx: StepContext, name: str, check: bool = False, **raw: object) -> StepResult:
    step = load_step_types()[name]
    args, problems = bind_args(step.params, raw)
    assert not problems, problems
    return step.check(ctx, args) if check else step.run(ctx, args)


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
    stop = threading.Event()

    def b_agent() -> None:
        for _ in range(100):  # bounded: 100 x 50 ms
            if stop.wait(0.05):
                return
            try:
                _run(b, "quorum.acquire", site="B")
                return
            except StepFailed:
                continue

    agent = threading.Thread(target=b_agent)
    agent.start()
    try:
        moved = _run(a, "quorum.release", to="B")
    finally:
        stop.set()
        agent.join()
    assert moved.changed and moved.data["from"] == "A"
    assert moved.message.startswith("quorum released by A, now held by B")
    assert _run(a, "check.quorum", site="B").message.startswith("site B holds quorum")
    with pytest.raises(StepFailed) as not_here:
        _run(a, "quorum.release", to="A")  # B holds it: only B's node can release it
    assert not_here.value.code == "not-holder-here"
