"""Simulated migration: the adaptive-convergence policy on a hot guest, and its cost.

Figures (targets in brackets):
- a hot guest (2 GiB, dirties 3000 MiB/s in a 1 GiB working set, 1000 MiB/s link, 120 s
  deadline): converges with adaptive downtime [yes, downtime <= 2000 ms ceiling]; the same
  guest without it, and without it nor auto-converge, for comparison;
- ConvergencePolicy.observe median cost [<= 50 µs; a driver polls every 500 ms];
- SimHypervisor state operations (define+state through the JSON file) median [<= 5 ms];
- a 128 MiB sim migration end to end, wall time on a FakeClock [<= 50 ms];
- HeartbeatParser throughput on a noisy 16 MiB serial log fed in 64 KiB chunks
  [>= 20 MiB/s], and its ratio to one `re.findall` over the whole decoded text.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from pathlib import Path

from drorch.environment import Environment
from drorch.model.types import Cluster, Hypervisors, Node, Site
from drorch.monitor.heartbeat import HeartbeatParser
from drorch.testing.clock import FakeClock
from drorch.virt.base import MigrationFailed, MigrationOptions, MigrationProgress, MigrationResult
from drorch.virt.convergence import ConvergencePolicy
from drorch.virt.sim import SIM_NS, SimHypervisor

MIB = 1024 * 1024
HOT = (
    "<domain type='qemu'><name>{name}</name><memory unit='MiB'>2048</memory>"
    f"<metadata><sim:guest xmlns:sim='{SIM_NS}' dirty_rate_mibps='3000' "
    "working_set_mib='1024'/></metadata></domain>"
)


def _pair(base: Path) -> tuple[SimHypervisor, SimHypervisor]:
    cluster = Cluster(
        "bench",
        (Site("A", (Node("a1"),)), Site("B", (Node("b1"),))),
        "A",
        hypervisor=Hypervisors(state_dir="state", bandwidth_mibps=1000),
    )
    env = Environment(clock=FakeClock(), base_dir=base)
    return (
        SimHypervisor(cluster, cluster.sites[0], env, speedup=1),
        SimHypervisor(cluster, cluster.sites[1], env, speedup=1),
    )


def _migrate(base: Path, name: str, options: MigrationOptions) -> MigrationResult:
    a, b = _pair(base)
    a.define(HOT.format(name=name))
    a.start(name)
    try:
        return a.migrate_live(name, b, options)
    except MigrationFailed as failed:
        assert failed.result is not None
        return failed.result


def _median_us(func: object, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        func()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def main() -> int:
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        runs = {
            "adaptive": MigrationOptions(deadline=120),
            "no adaptive (auto-converge only)": MigrationOptions(deadline=120, adaptive=False),
            "neither": MigrationOptions(deadline=120, adaptive=False, auto_converge=False),
        }
        results = {label: _migrate(base, f"hot{i}", o) for i, (label, o) in enumerate(runs.items())}
        print("hot guest: 2 GiB, 3000 MiB/s dirty in 1 GiB, 1000 MiB/s link, deadline 120 s")
        for label, r in results.items():
            print(
                f"  {label:34s} converged={'yes' if r.converged else 'no ':3s} "
                f"downtime={r.downtime_ms if r.downtime_ms is not None else '-'} ms "
                f"max={r.final_max_downtime_ms} ms total={r.total_seconds:.1f} s "
                f"iterations={r.iterations}"
            )
        adaptive = results["adaptive"]
        good = adaptive.converged and (adaptive.downtime_ms or 0) <= 2000
        ok &= good
        print(f"  adaptive converges within the 2000 ms ceiling: {good} [target: True]")
        slower = results["no adaptive (auto-converge only)"]
        if slower.converged:
            ratio = slower.total_seconds / adaptive.total_seconds
            print(f"  total time without/with adaptive: {ratio:.2f}x")

        policy = ConvergencePolicy(MigrationOptions())
        counter = iter(range(10**9))

        def observe() -> None:
            i = next(counter)
            policy.observe(MigrationProgress(1.0, 0, (1000 - i % 7) * MIB, 0, 0, i, 900, 300))

        cost = _median_us(observe, 20_000)
        ok &= cost <= 50
        print(f"ConvergencePolicy.observe median {cost:.1f} µs [target <= 50 µs]")

        a, _ = _pair(base / "site")
        for i in range(20):  # a site of 20 VMs
            a.define(HOT.format(name=f"g{i}"))
        names = iter(range(10**9))

        def define_and_read() -> None:
            name = f"g{next(names) % 20}"
            a.define(HOT.format(name=name))
            a.state(name)

        state_ms = _median_us(define_and_read, 300) / 1000
        ok &= state_ms <= 5
        print(f"sim redefine+state, 20-VM site, median {state_ms:.2f} ms [target <= 5 ms]")

        small = MigrationOptions()

        def small_migration() -> None:
            x, y = _pair(base / f"m{next(names)}")
            x.define(HOT.format(name="s").replace("2048", "128"))
            x.start("s")
            x.migrate_live("s", y, small)

        wall_ms = _median_us(small_migration, 30) / 1000
        ok &= wall_ms <= 50
        print(f"128 MiB sim migration wall time median {wall_ms:.1f} ms [target <= 50 ms]")
        ok &= _parser_throughput()
    return 0 if ok else 1


def _parser_throughput() -> bool:
    noise = b"[    3.201] virtio_blk virtio1: [vda] 2048 512-byte logical blocks\n"
    lines = [noise if i % 3 else b"HEARTBEAT %d uptime=%d.00\n" % (i, i) for i in range(300_000)]
    log = b"".join(lines)[: 16 * MIB]
    chunk = 64 * 1024

    def ours() -> int:
        parser = HeartbeatParser()
        return sum(len(parser.feed(log[i : i + chunk])) for i in range(0, len(log), chunk))

    def naive() -> int:
        return len(re.findall(r"HEARTBEAT (\d+)", log.decode("latin-1")))

    ours_s = statistics.median(_timed(ours) for _ in range(3))
    naive_s = statistics.median(_timed(naive) for _ in range(3))
    rate = len(log) / MIB / ours_s
    print(
        f"HeartbeatParser {rate:.0f} MiB/s [target >= 20 MiB/s]; "
        f"time vs one re.findall over the whole text: {ours_s / naive_s:.2f}x"
    )
    return rate >= 20


def _timed(func: object) -> float:
    start = time.perf_counter()
    func()  # type: ignore[operator]
    return time.perf_counter() - start
