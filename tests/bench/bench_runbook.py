"""The runbook engine's own cost.

1. Overhead per step on the sim lab: a runbook of 200 `wait 0s` steps run by the engine
   (SystemClock, a real SQLite journal with synchronous=FULL in a temp state dir, the
   sim hypervisor's environment) against calling the same step's run() 200 times
   directly. Median of 5. Target: <= 10 ms per step. Peer: two bare durable SQLite
   commits (what journaling a step's start and end costs at the least), same disk, same
   run; the ratio says how much of the overhead is the fsync floor.
2. A 300-VM planned migration (tests/bench/bench_config's cluster, sim hypervisor):
   plan computation alone (pure `plan_migration`), observing the cluster, and the
   whole `plan.execute` dry run (observe + plan + expand + journal + check of every
   plan step). Median of 5. Target: dry run <= 2 s. When a plan step type is not
   registered yet, a no-op stand-in is used and the output says so.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from drorch.clock import SystemClock
from drorch.envbuild import build_environment_report
from drorch.model.loader import parse_cluster_text
from drorch.runbook.engine import Engine
from drorch.runbook.expand import ACTION_STEP_TYPES, plan_args
from drorch.runbook.load import parse_runbook_text
from drorch.runbook.setup import Output, RunOptions
from drorch.runbook.steps.base import (
    STEP_TYPES,
    Param,
    ParamKind,
    StepContext,
    StepResult,
    StepType,
    load_step_types,
)
from drorch.testing.clock import FakeClock
from tests.bench.bench_config import big_config

STEPS = 200
ROUNDS = 5
TARGET_STEP_MS = 10.0
TARGET_DRY_RUN_S = 2.0

SIM = """\
cluster: benchsim
primary_site: A
sites:
  A: {nodes: [{name: a1}]}
  B: {nodes: [{name: b1}]}
hypervisor: {driver: sim, state_dir: sim}
"""


def _median(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _engine(cfg: Path, text: str, state: Path, dry_run: bool = False) -> Engine:
    cluster, _ = parse_cluster_text(cfg.read_text(), str(cfg))
    env, _problems = build_environment_report(cluster, cfg.parent, SystemClock())
    env.state_dir = state
    runbook = parse_runbook_text(text, "bench.yaml")
    return Engine(runbook, cluster, env, RunOptions(dry_run=dry_run, output=Output()))


def _sqlite_floor(path: Path) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS t (x TEXT)")

    def commits() -> None:
        for _ in range(STEPS * 2):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES ('x')")
            db.execute("COMMIT")

    return _median(commits) / STEPS


def overhead(tmp: Path) -> tuple[float, float]:
    cfg = tmp / "sim.yaml"
    cfg.write_text(SIM)
    steps = "".join(f"  - {{id: w{i}, action: wait, with: {{seconds: 0}}}}\n" for i in range(STEPS))
    text = f"name: overhead\nsteps:\n{steps}"
    counter = {"n": 0}

    def engine_run() -> None:
        counter["n"] += 1
        summary = _engine(cfg, text, tmp / f"state{counter['n']}").start({})
        assert summary.status == "succeeded", summary

    wait = load_step_types()["wait"]
    ctx = _engine(cfg, text, tmp / "direct")

    def direct() -> None:
        c = StepContext(ctx.env, ctx.cluster)
        for _ in range(STEPS):
            wait.run(c, {"seconds": 0.0, "reason": ""})

    engine_s, direct_s = _median(engine_run), _median(direct)
    return (engine_s - direct_s) / STEPS, _sqlite_floor(tmp / "floor.sqlite")


class _StandIn(StepType):
    """Stand-in used by the bench while the real step type is not registered."""

    def check(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        return StepResult(True, f"would {self.name} {args.get('target')}")

    def probe(self, ctx: StepContext, args: Mapping[str, object]) -> bool:
        return False

    def run(self, ctx: StepContext, args: Mapping[str, object]) -> StepResult:
        return StepResult(True, "")


def _stand_ins(plan_steps: list[object]) -> list[str]:
    keys: dict[str, dict[str, object]] = {}
    for step in plan_steps:
        name = ACTION_STEP_TYPES[step.action]  # type: ignore[attr-defined]
        keys.setdefault(name, {}).update(plan_args(step))  # type: ignore[arg-type]
    made = []
    for name, sample in keys.items():
        if name in STEP_TYPES:
            continue
        params = tuple(
            Param(k, ParamKind.INT if isinstance(v, int) and not isinstance(v, bool)
                  else ParamKind.FLOAT if isinstance(v, float)
                  else ParamKind.BOOL if isinstance(v, bool) else ParamKind.STR, "", default=None)
            for k, v in sample.items()
        )  # fmt: skip
        STEP_TYPES[name] = type(name, (_StandIn,), {"name": name, "params": params})()
        made.append(name)
    return made


def dry_run(tmp: Path) -> tuple[float, float, float, int, list[str]]:
    from drorch.decide.plan import plan_migration
    from drorch.observe import observe

    cfg = tmp / "big.yaml"
    cfg.write_text(big_config() + "hypervisor: {driver: sim, state_dir: sim}\n")
    cluster, _ = parse_cluster_text(cfg.read_text(), str(cfg))
    env, _ = build_environment_report(cluster, cfg.parent, FakeClock())
    snapshot = observe(cluster, env).snapshot
    plan = plan_migration(snapshot, "B")
    assert plan.runnable, plan.blockers
    made = _stand_ins(list(plan.steps))
    plan_s = _median(lambda: plan_migration(snapshot, "B"))
    observe_s = _median(lambda: observe(cluster, env))
    text = "name: big\nsteps:\n  - {id: go, action: plan.execute, with: {kind: migration, to: B}}\n"
    counter = {"n": 0}

    def dry() -> None:
        counter["n"] += 1
        engine = _engine(cfg, text, tmp / f"dstate{counter['n']}", dry_run=True)
        summary = engine.start({})
        assert summary.status in ("dry-run", "dry-run-failed"), summary

    return plan_s, observe_s, _median(dry), len(plan.steps), made


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="drorch-bench-runbook-") as name:
        tmp = Path(name)
        os.environ.setdefault("DRORCH_STATE_DIR", str(tmp / "state"))
        (tmp / "small").mkdir()
        (tmp / "big").mkdir()
        per_step, floor = overhead(tmp / "small")
        plan_s, observe_s, dry_s, n_steps, made = dry_run(tmp / "big")
    ok = per_step * 1000 <= TARGET_STEP_MS and dry_s <= TARGET_DRY_RUN_S
    print(f"engine overhead per step (median of {ROUNDS}, {STEPS} steps)  {per_step * 1000:.2f} ms"
          f"   target <= {TARGET_STEP_MS} ms   peer: 2 durable SQLite commits {floor * 1000:.2f} ms"
          f" (ratio {per_step / floor:.2f}x)")  # fmt: skip
    print(f"300-VM migration plan: {n_steps} steps")
    print(f"  plan computation (pure, median of {ROUNDS})   {plan_s * 1000:.1f} ms")
    print(f"  observe the sim cluster (median of {ROUNDS})  {observe_s * 1000:.1f} ms")
    print(f"  plan.execute dry run (median of {ROUNDS})     {dry_s * 1000:.1f} ms   target <= "
          f"{TARGET_DRY_RUN_S} s   ratio to plan computation {dry_s / plan_s:.1f}x")  # fmt: skip
    if made:
        print(f"  (no-op stand-ins for step types not registered yet: {', '.join(sorted(made))})")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
