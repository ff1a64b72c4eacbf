"""The simulated lab (lab/sim.yaml) in a temp dir, with an environment on a FakeClock."""

from __future__ import annotations

import shutil
from pathlib import Path

from drorch.envbuild import build_environment_report
from drorch.environment import Environment
from drorch.model.loader import load_cluster
from drorch.model.types import Cluster, Drill
from drorch.testing.clock import FakeClock

REPO = Path(__file__).resolve().parent.parent.parent


class SimLab:
    def __init__(self, tmp: Path) -> None:
        self.config = tmp / "sim.yaml"
        shutil.copy(REPO / "lab" / "sim.yaml", self.config)
        self.state = tmp / "state"
        self.clock = FakeClock()
        self.cluster: Cluster = load_cluster(self.config)

    def env(self) -> Environment:
        env, problems = build_environment_report(self.cluster, self.config.parent, self.clock)
        assert not problems, problems
        env.state_dir = self.state
        return env

    def drill(self, kind: str) -> Drill:
        return next(d for d in self.cluster.drills if d.kind.value == kind)
