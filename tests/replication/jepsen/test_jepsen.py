"""The Jepsen-style checker (checker.py) inside `make test`: every block the primary
acknowledged is on whatever replica drorch promotes without force. About a minute:
`DRORCH_JEPSEN_SECONDS` changes the budget, `DRORCH_JEPSEN_SEED` the schedule, and
`DRORCH_JEPSEN_OUT=FILE` keeps the per-trial record (JSON)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.drbd.conftest import QuorumDaemon
from tests.drbd.conftest import quorum_daemon as quorum_daemon  # the fixture
from tests.replication.jepsen.checker import NEMESES, dump, run


@pytest.mark.slow
def test_no_acknowledged_block_is_lost(quorum_daemon: QuorumDaemon, tmp_path: Path) -> None:
    budget = float(os.environ.get("DRORCH_JEPSEN_SECONDS", "45"))
    seed = int(os.environ.get("DRORCH_JEPSEN_SEED", "20261203"))
    trials = run(tmp_path, quorum_daemon, budget=budget, seed=seed, max_trials=16)
    out = os.environ.get("DRORCH_JEPSEN_OUT")
    text = dump(trials, Path(out) if out else tmp_path / "jepsen.json")
    print(text)
    assert {t.nemesis for t in trials} == set(NEMESES)
    assert sum(t.acknowledged for t in trials) > 0, text
    assert sum(t.lost for t in trials) == 0, text
    # the witness's record did its job at least once: B refused, A's copy promoted
    assert any(t.promoted == "A" for t in trials if t.nemesis == "stop-fence-kill"), text
