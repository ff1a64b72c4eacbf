"""A copy of lab/sim.yaml in a temp folder with its Environment on a FakeClock, for
the step-family tests: call one step type (check / probe / run) or run a runbook."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from drorch.clock import Clock
from drorch.envbuild import build_environment
from drorch.environment import Environment
from drorch.model.loader import load_cluster
from drorch.model.types import Cluster
from drorch.observe import observe
from drorch.runbook.engine import Engine
from drorch.runbook.gates import YesConfirmer
from drorch.runbook.load import parse_runbook_text
from drorch.runbook.setup import RecordingOutput, RunOptions
from drorch.runbook.steps.base import (
    Progress,
    StepContext,
    StepResult,
    StepType,
    bind_args,
    load_step_types,
)
from drorch.runbook.summary import RunSummary
from drorch.testing.clock import FakeClock
from tests.conftest import REPO


class RecordingProgress:
    """A step's progress sink (runbook.steps.base.Progress) that keeps every update
    and note, for the tests to look at."""

    def __init__(self) -> None:
        self.updates: list[tuple[float, float, str]] = []
        self.notes: list[str] = []

    def update(self, done: float, total: float, detail: str = "") -> None:
        self.updates.append((done, total, detail))

    def note(self, text: str) -> None:
        self.notes.append(text)


class SimLab:
    def __init__(
        self, tmp: Path, edit: Mapping[str, str] | None = None, clock: Clock | None = None
    ) -> None:
        text = (REPO / "lab" / "sim.yaml").read_text()
        for old, new in (edit or {}).items():
            assert old in text, old
            text = text.replace(old, new)
        self.dir = tmp
        self.config = tmp / "sim.yaml"
        self.config.write_text(text)
        if not (tmp / "xml").exists():  # the VMs' domain XML (sim.yaml's `xml:`)
            shutil.copytree(REPO / "lab" / "xml", tmp / "xml")
        self.cluster: Cluster = load_cluster(self.config)
        self.clock = FakeClock()
        self.env: Environment = build_environment(self.cluster, tmp, clock or self.clock)
        self.env.state_dir = tmp / "state"
        self.output = RecordingOutput()
        self.types = load_step_types()
        self.facts: dict[str, object] = {}

    def ctx(
        self, *, dry: bool = False, force: bool = False, progress: Progress | None = None
    ) -> StepContext:
        if progress is not None:
            return StepContext(self.env, self.cluster, progress=progress, facts=self.facts)
        return StepContext(
            self.env,
            self.cluster,
            dry_run=dry,
            force=force,
            accept_data_loss=force,
            facts=self.facts,
            step_id="t",
        )

    def bind(self, name: str, raw: Mapping[str, object]) -> tuple[StepType, dict[str, object]]:
        step = self.types[name]
        args, problems = bind_args(step.params, raw)
        assert not problems, problems
        assert not step.validate(args)
        return step, args

    def run(self, name: str, force: bool = False, **raw: object) -> StepResult:
        step, args = self.bind(name, raw)
        return step.run(self.ctx(force=force), args)

    def check(self, name: str, **raw: object) -> StepResult:
        step, args = self.bind(name, raw)
        return step.check(self.ctx(dry=True), args)

    def probe(self, name: str, **raw: object) -> bool:
        step, args = self.bind(name, raw)
        return step.probe(self.ctx(), args)

    def runbook(
        self, text: str, params: dict[str, object] | None = None, **options: object
    ) -> RunSummary:
        opts = RunOptions(
            output=self.output, user="tester", confirmer=YesConfirmer("tester"), **options
        )  # type: ignore[arg-type]
        engine = Engine(parse_runbook_text(text, "rb.yaml"), self.cluster, self.env, opts)
        return engine.start(params or {})

    def vms(self) -> dict[tuple[str, str], str]:
        return observe(self.cluster, self.env).vm_states

    def roles(self) -> dict[tuple[str, str], str]:
        snap = observe(self.cluster, self.env).snapshot
        return {k: v.role for k, v in snap.replicas.items()}

    def observed(self) -> dict[str, object]:
        """What an operator sees: every replica's status (epochs aside: they only rise),
        VM states, services and the quorum holder."""
        reps = {
            f"{v}@{n}": {
                k: x for k, x in r.status().as_dict().items() if k not in ("epoch", "generation")
            }
            for (v, n), r in sorted(self.env.replicators.items())
        }
        world = self.world()
        witness = world.get("sim-witness.json")
        holder = witness.get("holder") if isinstance(witness, dict) else self.cluster.primary_site
        from drorch.runbook.steps.service import service_record

        services = {s.name: service_record(self.ctx(), s.name) for s in self.cluster.services}
        return {"replicas": reps, "vms": self.vms(), "holder": holder, "services": services}

    def world(self) -> dict[str, object]:
        """Every file of the simulated world (VM records, replicas, witness, services)."""
        root = self.dir / ".drorch-state"
        out: dict[str, object] = {}
        for path in sorted(root.rglob("*.json")):
            out[str(path.relative_to(root))] = json.loads(path.read_text())
        return out


PLAN = """\
name: move
params:
  to: {type: str}
  kind: {type: str, default: migration}
steps:
  - id: go
    action: plan.execute
    with: {kind: "${params.kind}", to: "${params.to}"}
"""
