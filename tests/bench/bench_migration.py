"""Live migration in the real two-site lab (QEMU/TCG, 128 MiB guest, two libvirtds).

1. Orchestrator overhead: drorch's `migrate_live` against plain
   `virsh migrate --live --p2p --persistent --undefinesource` of the same guest with the
   same flags and memory stream URI. Five pairs, alternating the tool that goes first
   and the direction, so each tool moves the guest both ways. Median total wall time and
   downtime of each; ratio drorch / virsh (target <= 1.10).
2. Adaptive convergence: a guest that keeps rewriting 16 MiB of memory (`dirty=16`),
   over a 10 MiB/s link, with a 60 s deadline - once with the adaptive policy (downtime
   raised step by step, auto-converge armed) and once without. Reports whether it
   converged and the final downtime. Target: converges with adaptive. (Under TCG QEMU's
   vCPU throttle bites slowly, so the deadline leaves it time to.)

The bench brings up its own lab (name `bench`, prefix `db`, subnet 10.77.62) and tears
it down afterwards.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from drorch.clock import SystemClock
from drorch.lab.guest import GuestSpec, domain_xml, wait_heartbeat
from drorch.lab.image import GuestImage
from drorch.lab.lab import Lab
from drorch.lab.layout import LabLayout
from drorch.remote.local import LocalRunner
from drorch.virt.base import (
    MigrationFailed,
    MigrationOptions,
    MigrationProgress,
    MigrationResult,
    VMState,
)
from drorch.virt.libvirt import LibvirtHypervisor

LAYOUT = LabLayout(name="bench", prefix="db", subnet="10.77.62")
PAIRS = 5
TARGET_RATIO = 1.10
DIRTY_MIB = 16
LINK_MIBPS = 10
DEADLINE = 60.0


@dataclass
class Run:
    tool: str
    direction: str
    seconds: float
    downtime_ms: int | None


def _boot(hyp: LibvirtHypervisor, image: GuestImage, name: str, cmdline: str = "") -> None:
    log = LAYOUT.guest_dir / f"{name}.serial.log"
    log.unlink(missing_ok=True)
    hyp.define(domain_xml(GuestSpec(name, cmdline=cmdline), image, log))
    hyp.start(name)
    wait_heartbeat(log, SystemClock(), above=1, timeout=60)


def _remove(name: str, *hyps: LibvirtHypervisor) -> None:
    for hyp in hyps:
        if hyp.state(name) != VMState.UNDEFINED:
            hyp.destroy(name)
            hyp.undefine(name)


def _virsh_migrate(
    runner: LocalRunner, src: str, dst: str, dest: LibvirtHypervisor, name: str
) -> Run:
    argv = ["virsh", "-c", LAYOUT.local_uri(src), "migrate", "--live", "--p2p"]
    argv += ["--persistent", "--undefinesource", name, LAYOUT.peer_uri(dst)]
    argv += ["--migrateuri", LAYOUT.migration_uri(dst)]
    started = time.monotonic()
    runner.run(argv, timeout=120, check=True)
    seconds = time.monotonic() - started
    lv = dest._lv
    stats = dest.conn.lookupByName(name).jobStats(lv.VIR_DOMAIN_JOB_STATS_COMPLETED)
    return Run("virsh", f"{src}->{dst}", seconds, stats.get("downtime"))


def _drorch_migrate(src: LibvirtHypervisor, dst: LibvirtHypervisor, name: str) -> Run:
    started = time.monotonic()
    result = src.migrate_live(name, dst, MigrationOptions(deadline=120.0))
    seconds = time.monotonic() - started
    return Run("drorch", f"{src.site}->{dst.site}", seconds, result.downtime_ms)


def overhead(a: LibvirtHypervisor, b: LibvirtHypervisor, image: GuestImage) -> bool:
    runner = LocalRunner()
    name = "bench-idle"
    _remove(name, a, b)
    _boot(a, image, name)
    hyps = {"siteA": a, "siteB": b}
    # warm-up round trip, not counted: the first migration into a fresh libvirtd probes
    # QEMU's capabilities (seconds)
    _drorch_migrate(a, b, name)
    _drorch_migrate(b, a, name)
    runs: list[Run] = []
    here = "siteA"
    try:
        for pair in range(PAIRS):
            order = ("drorch", "virsh") if pair % 2 == 0 else ("virsh", "drorch")
            for tool in order:
                there = "siteB" if here == "siteA" else "siteA"
                if tool == "drorch":
                    run = _drorch_migrate(hyps[here], hyps[there], name)
                else:
                    run = _virsh_migrate(runner, here, there, hyps[there], name)
                runs.append(run)
                print(
                    f"  pair {pair + 1} {run.tool:6} {run.direction:14} {run.seconds:6.2f} s  "
                    f"downtime {run.downtime_ms} ms",
                    flush=True,
                )
                here = there
    finally:
        _remove(name, a, b)
    med: dict[str, tuple[float, float]] = {}
    for tool in ("drorch", "virsh"):
        mine = [r for r in runs if r.tool == tool]
        downtimes = [r.downtime_ms for r in mine if r.downtime_ms is not None]
        med[tool] = (
            statistics.median(r.seconds for r in mine),
            statistics.median(downtimes) if downtimes else float("nan"),
        )
    ratio = med["drorch"][0] / med["virsh"][0]
    ok = ratio <= TARGET_RATIO
    print(f"  median total     drorch {med['drorch'][0]:6.2f} s   virsh {med['virsh'][0]:6.2f} s")
    print(f"  median downtime  drorch {med['drorch'][1]:6.0f} ms  virsh {med['virsh'][1]:6.0f} ms")
    print(
        f"  ratio drorch/virsh total time {ratio:.3f}  (target <= {TARGET_RATIO:.2f})  "
        f"{'OK' if ok else 'MISSED'}"
    )
    return ok


def _dirty_run(
    a: LibvirtHypervisor, b: LibvirtHypervisor, image: GuestImage, adaptive: bool
) -> MigrationResult | MigrationFailed:
    name = f"bench-dirty-{'adaptive' if adaptive else 'fixed'}"
    _remove(name, a, b)
    _boot(a, image, name, cmdline=f"dirty={DIRTY_MIB}")
    options = MigrationOptions(
        bandwidth_mibps=LINK_MIBPS,
        deadline=DEADLINE,
        adaptive=adaptive,
        auto_converge=adaptive,
        stall_iterations=1,
        allow_postcopy=False,
    )
    samples: list[MigrationProgress] = []
    try:
        return a.migrate_live(name, b, options, samples.append)
    except MigrationFailed as exc:
        return exc
    finally:
        if samples:
            peak = max(p.dirty_rate for p in samples) / 2**20
            throttled = next((p.elapsed for p in samples if p.auto_converge), None)
            when = f"from {throttled:.0f} s" if throttled is not None else "never"
            print(f"    guest dirty rate peak {peak:.1f} MiB/s; QEMU throttled the vCPU {when}")
        _remove(name, a, b)


def convergence(a: LibvirtHypervisor, b: LibvirtHypervisor, image: GuestImage) -> bool:
    print(
        f"  guest rewriting {DIRTY_MIB} MiB, link {LINK_MIBPS} MiB/s, deadline {DEADLINE:g} s, "
        "max downtime 300 ms"
    )
    converged = {}
    for adaptive in (False, True):
        label = "with adaptive   " if adaptive else "without adaptive"
        got = _dirty_run(a, b, image, adaptive)
        if isinstance(got, MigrationFailed):
            r = got.result
            converged[adaptive] = False
            total = f"{r.total_seconds:.1f} s" if r else "?"
            print(f"  {label}: converged no   after {total}: {got}")
        else:
            converged[adaptive] = got.converged
            print(
                f"  {label}: converged {'yes' if got.converged else 'no '}  after "
                f"{got.total_seconds:.1f} s, downtime {got.downtime_ms} ms (allowed "
                f"{got.final_max_downtime_ms} ms), {got.iterations} iterations: {got.reason}"
            )
    print(f"  target: converges with adaptive  {'OK' if converged[True] else 'MISSED'}")
    return converged[True]


def main() -> int:
    lab = Lab(LAYOUT, LocalRunner())
    try:
        image = lab.up()
        a, b = (
            LibvirtHypervisor.connect(
                LAYOUT.local_uri(s), s, peer_uri=LAYOUT.peer_uri(s), poll_interval=0.2
            )
            for s in LAYOUT.site_names
        )
        try:
            print("orchestrator overhead: drorch vs virsh migrate --live --p2p", flush=True)
            ok = overhead(a, b, image)
            print("adaptive convergence on a memory-dirtying guest", flush=True)
            ok = convergence(a, b, image) and ok
        finally:
            a.close()
            b.close()
    finally:
        lab.down()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
