"""The one object that carries everything with side effects: clock, runners, drivers.

The CLI, the agent and the runbook engine each build one; tests build one from
`drorch.testing`. No module reaches for a global.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from drorch.clock import Clock, SystemClock
from drorch.statedir import default_state_dir

if TYPE_CHECKING:
    from drorch.remote.base import CommandRunner
    from drorch.replication.base import Replicator
    from drorch.virt.base import Hypervisor


@dataclass
class Environment:
    """`runners` by node name; `hypervisors` by site name; `replicators` by
    (volume name, node name). `base_dir` resolves relative paths in the config;
    `state_dir` is where everything that keeps state keeps it (see default_state_dir);
    `config_file` is the cluster file when known."""

    clock: Clock = field(default_factory=SystemClock)
    runners: dict[str, CommandRunner] = field(default_factory=dict)
    hypervisors: dict[str, Hypervisor] = field(default_factory=dict)
    replicators: dict[tuple[str, str], Replicator] = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path.cwd)
    state_dir: Path = field(default_factory=default_state_dir)
    # the cluster file itself, when known: hooks that run later read it (pyrepl's
    # fence-peer command); None when the model came from elsewhere
    config_file: Path | None = None

    def runner(self, node: str) -> CommandRunner:
        return self.runners[node]

    def hypervisor(self, site: str) -> Hypervisor:
        return self.hypervisors[site]

    def close(self) -> None:
        for r in self.runners.values():
            r.close()
