"""`drorch lab torture`: the nemesis's schedules, made from a seed (pure, no I/O).

A schedule is 1-3 faults, each after a random gap, then a hold (the agents react to
what the faults left), then everything is healed and restored. The same seed and run
number always give the same schedule: `random.Random` seeded with a string is stable
across Python versions and machines.

Rules that keep every schedule meaningful (not merely destructive):
- a fault is never repeated within a schedule (the same kind at the same target);
- at most one site is killed: with both sites' power gone there is nothing left to
  judge, and the lab's own restore would pick the survivor, not drorch;
- nothing is aimed at a site after it was killed (its agent and disks are gone).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# kind -> the targets it can hit; `partition` takes a pair, the others a place
CATALOGUE: dict[str, tuple[str, ...]] = {
    "partition": ("A-B", "A-witness", "B-witness"),
    "kill-site": ("A", "B"),
    "kill-witness": ("witness",),
    "freeze-agent": ("A", "B"),
    "slow-disk": ("A", "B"),
}
# how often each kind is drawn (partitions are the commonest fault of a real WAN)
WEIGHTS: dict[str, int] = {
    "partition": 4,
    "kill-site": 2,
    "kill-witness": 1,
    "freeze-agent": 2,
    "slow-disk": 1,
}


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the run starts
    kind: str
    target: str

    def describe(self) -> str:
        return f"+{self.at:.1f}s {self.kind} {self.target}"


@dataclass(frozen=True)
class Schedule:
    run: int
    seed: int
    faults: tuple[Fault, ...]
    heal_at: float  # seconds after the run starts: heal everything, restore

    def describe(self) -> str:
        return ", ".join(f.describe() for f in self.faults) + f", +{self.heal_at:.1f}s heal"


@dataclass(frozen=True)
class Timing:
    """The ranges a schedule's times are drawn from (seconds)."""

    first: tuple[float, float] = (1.0, 4.0)  # run start -> first fault
    gap: tuple[float, float] = (1.0, 8.0)  # between faults
    hold: tuple[float, float] = (6.0, 25.0)  # last fault -> heal (takeover_wait is 9 s)
    max_faults: int = 3


def _sites_of(kind: str, target: str) -> set[str]:
    if kind == "partition":
        return {t for t in target.split("-") if t != "witness"}
    return {target} if target in ("A", "B") else set()


def make_schedule(seed: int, run: int, timing: Timing | None = None) -> Schedule:
    """The schedule of run `run` (1-based) for `seed`: deterministic."""
    t = timing or Timing()
    rng = random.Random(f"drorch-torture:{seed}:{run}")
    count = rng.randint(1, t.max_faults)
    at = round(rng.uniform(*t.first), 1)
    faults: list[Fault] = []
    killed: set[str] = set()
    while len(faults) < count:
        kinds = list(WEIGHTS)
        kind = rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds])[0]
        target = rng.choice(CATALOGUE[kind])
        if any(f.kind == kind and f.target == target for f in faults):
            continue
        if kind == "kill-site" and killed:
            continue
        if _sites_of(kind, target) & killed and kind != "partition":
            continue
        if kind == "kill-site":
            killed.add(target)
        faults.append(Fault(at, kind, target))
        at = round(at + rng.uniform(*t.gap), 1)
    last = faults[-1].at
    heal_at = round(last + rng.uniform(*t.hold), 1)
    return Schedule(run, seed, tuple(faults), heal_at)


def make_schedules(seed: int, runs: int, timing: Timing | None = None) -> list[Schedule]:
    return [make_schedule(seed, n, timing) for n in range(1, runs + 1)]
