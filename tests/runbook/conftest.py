"""Engine test helpers: a tiny cluster, the ledger step family, a state dir per test."""

from __future__ import annotations

from pathlib import Path

import pytest

import drorch.testing.ledger_steps  # noqa: F401  (registers ledger.*)
from drorch.environment import Environment
from drorch.model.loader import parse_cluster_text
from drorch.model.types import Cluster
from drorch.runbook.engine import Engine
from drorch.runbook.gates import ScriptedConfirmer, YesConfirmer
from drorch.runbook.load import parse_runbook_text
from drorch.runbook.setup import RecordingOutput, RunOptions
from drorch.runbook.summary import RunSummary
from drorch.testing.clock import FakeClock

CLUSTER = """\
cluster: tiny
primary_site: A
sites:
  A: {nodes: [{name: a1}]}
  B: {nodes: [{name: b1}]}
"""


def tiny_cluster() -> Cluster:
    return parse_cluster_text(CLUSTER, "tiny.yaml")[0]


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state"
    monkeypatch.setenv("DRORCH_STATE_DIR", str(path))
    return path


class Lab:
    """One engine setup: run a runbook text with options, against a FakeClock."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ledger = tmp / "ledger"
        self.clock = FakeClock()
        self.env = Environment(clock=self.clock, state_dir=tmp / "state")
        self.output = RecordingOutput()

    def engine(self, text: str, **options: object) -> Engine:
        runbook = parse_runbook_text(text.replace("LEDGER", str(self.ledger)), "rb.yaml")
        opts = RunOptions(output=self.output, user="tester", **options)  # type: ignore[arg-type]
        if "confirmer" not in options:
            opts.confirmer = YesConfirmer("tester")
        return Engine(runbook, tiny_cluster(), self.env, opts)

    def run(
        self, text: str, params: dict[str, object] | None = None, **options: object
    ) -> RunSummary:
        return self.engine(text, **options).start(params or {})

    def lines(self) -> list[str]:
        from drorch.testing.ledger_steps import lines

        return lines(self.ledger)


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


__all__ = ["Lab", "ScriptedConfirmer", "tiny_cluster"]
