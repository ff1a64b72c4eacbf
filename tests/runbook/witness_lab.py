"""Steps against a REAL witness (tests/quorum's in-process QuorumServer, mutual TLS,
pinned certificates): a StepContext per site's node, one step at a time, and a lease
handed from one site to the other the way agents do it (the taker asks while the giver
releases)."""

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
from tests.quorum.conftest import InProcessWitness


@pytest.fixture
def witness(pki, make_config) -> Iterator[InProcessWitness]:  # type: ignore[no-untyped-def]
    """A witness whose lease (5 s) outlasts the test's steps without an agent renewing it."""
    path, port = make_config(lease_ms=5000)
    w = InProcessWitness(pki, port, path, init=True)
    try:
        yield w
    finally:
        w.stop()


def site_ctx(w: InProcessWitness, site: str, cluster_text: str) -> StepContext:
    """Cluster c1 as site `site`'s node sees it: its own certificate for the witness."""
    base = parse_cluster_text(cluster_text, "c1.yaml")[0]
    name = f"c1-{site.lower()}"
    cluster = dataclasses.replace(
        base,
        witness=Witness(
            w.server, w.pki.fingerprints["server"], str(w.pki.cert(name)), str(w.pki.key(name))
        ),
    )
    env = Environment(clock=SystemClock(), base_dir=w.config.parent)
    return StepContext(env, cluster)


def run_step(ctx: StepContext, name: str, check: bool = False, **raw: object) -> StepResult:
    step = load_step_types()[name]
    args, problems = bind_args(step.params, raw)
    assert not problems, problems
    return step.check(ctx, args) if check else step.run(ctx, args)


def hand_over(giver: StepContext, taker: StepContext, to: str, attempts: int) -> StepResult:
    """`giver` releases the lease to site `to` while `taker` (an agent there, here a
    thread) keeps asking for it, every 50 ms, at most `attempts` times."""
    stop = threading.Event()

    def agent() -> None:
        for _ in range(attempts):  # bounded
            if stop.wait(0.05):
                return
            try:
                run_step(taker, "quorum.acquire", site=to)
                return
            except StepFailed:
                continue

    thread = threading.Thread(target=agent)
    thread.start()
    try:
        return run_step(giver, "quorum.release", to=to)
    finally:
        stop.set()
        thread.join()
