"""Drill fakes for tests: a launcher whose drills each "run" for a fixed time on the
FakeClock, and a probe that says which history rows are still running."""

from __future__ import annotations

from dataclasses import dataclass, field

from drorch.clock import Clock
from drorch.drill.history import DrillRow
from drorch.drill.launch import Launched, Launcher
from drorch.drill.liveness import DrillProbe
from drorch.drill.schedule import Occurrence


@dataclass
class FakeRun(Launched):
    occ: Occurrence
    clock: Clock
    started: float
    duration: float
    status: int = 0

    @property
    def ended(self) -> float:
        return self.started + self.duration

    def poll(self) -> int | None:
        return self.status if self.clock.now() >= self.ended else None

    def describe(self) -> str:
        return f"fake run of {self.duration:.0f}s"


@dataclass
class FakeLauncher(Launcher):
    """`durations` by (cluster, drill), else `default`; `started` lists every run."""

    clock: Clock
    default: float = 600.0
    durations: dict[tuple[str, str], float] = field(default_factory=dict)
    fail_to_start: set[tuple[str, str]] = field(default_factory=set)
    started: list[FakeRun] = field(default_factory=list)

    def start(self, occ: Occurrence) -> Launched:
        if occ.ref.key in self.fail_to_start:
            raise OSError("no such file: drorch")
        run = FakeRun(occ, self.clock, self.clock.now(),
                      self.durations.get(occ.ref.key, self.default))  # fmt: skip
        self.started.append(run)
        return run


@dataclass
class FakeProbe(DrillProbe):
    """Live: the history rows whose id is in `live` (a test "kills" a drill by taking
    its id out). `asked` lists every row id asked about."""

    live: set[int] = field(default_factory=set)
    asked: list[int] = field(default_factory=list)

    def is_live(self, row: DrillRow) -> bool:
        self.asked.append(row.id)
        return row.id in self.live
