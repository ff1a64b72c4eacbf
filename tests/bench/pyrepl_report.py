"""bench_pyrepl's report: the table, the limits measured beside it, and the graded checks
(printed next to their targets; the exit status is 1 when one is missed)."""

from __future__ import annotations

import os
from dataclasses import dataclass

try:
    from tests.bench.qsd_mirror import mirror_checks
except ImportError:  # run as a script: python tests/bench/bench_pyrepl.py
    from qsd_mirror import mirror_checks  # type: ignore[no-redef]


@dataclass(frozen=True)
class Limits:
    fsync: float  # one pwrite + fdatasync, seconds
    fsync_pair: float  # the same, while the other site does one on the same disk
    rtt: float  # loopback TCP round trip
    protocol_c: float  # a bare two-process sync write here (pyrepl_floor.py), seconds
    pipeline_alone: float  # kernel-only pipeline (pyrepl_floor.py): MiB/s, no shipping
    pipeline_shipping: float  # and shipping every byte to a third process

    @property
    def physical_us(self) -> float:
        return (self.fsync + self.rtt) * 1e6

    @property
    def shared_disk_us(self) -> float:
        return (self.fsync_pair + self.rtt) * 1e6


def report(
    results: dict[str, dict[str, float]], limits: Limits, server_us: float, runs: int
) -> int:
    peer = results["nbdkit file"]
    split = os.environ.get("DRORCH_BENCH_DIR_B")
    disks = f"secondaries' files on {split}" if split else "backing files on one file system"
    print(f"qemu-img bench, {runs} interleaved rounds, medians; {disks}")
    print(
        f"{'target':<42} {'1MiB seq MiB/s':>15} {'vs nbdkit':>10} "
        f"{'4KiB sync us':>13} {'vs nbdkit':>10} {'flushes/write':>14}"
    )
    for name, r in results.items():
        print(
            f"{name:<42} {r['seq_mibps']:>15.1f} {r['seq_mibps'] / peer['seq_mibps']:>9.0%} "
            f"{r['sync4k_us']:>13.0f} {r['sync4k_us'] / peer['sync4k_us']:>9.2f}x "
            f"{r['flushes_per_write']:>14.2f}"
        )
    limit_us = limits.physical_us
    print(
        f"physical limit of a sync write: fsync {limits.fsync * 1e6:.0f} us + loopback RTT "
        f"{limits.rtt * 1e6:.0f} us = {limit_us:.0f} us"
    )
    print(
        f"pyrepl sync, inside the server (write in -> durable on both sides): "
        f"{server_us:.0f} us = {server_us / limit_us:.2f}x the limit; the rest of the "
        f"{results['pyrepl sync']['sync4k_us']:.0f} us is the NBD client and its round "
        f"trip (nbdkit's own 4KiB sync write, no replication: "
        f"{peer['sync4k_us']:.0f} us = {peer['sync4k_us'] / limit_us:.2f}x the limit)"
    )
    print(
        f"{'both sites on their file systems' if split else 'both sites share one disk'}: "
        f"two fsyncs at once (one per site) take up to "
        f"{limits.fsync_pair * 1e6:.0f} us, so a sync write cannot beat "
        f"{limits.shared_disk_us:.0f} us here; inside the server pyrepl is at "
        f"{server_us / limits.shared_disk_us:.2f}x that floor"
    )
    standalone, asyn, sync = (results[f"pyrepl {m}"] for m in ("standalone", "async", "sync"))
    floor_us = limits.protocol_c * 1e6
    print(
        f"bare protocol C here (two processes, a file per site, one round trip, no "
        f"pyrepl): {floor_us:.0f} us = {floor_us / limit_us:.2f}x the limit; pyrepl inside "
        f"the server is at {server_us / floor_us:.2f}x that"
    )
    ceiling = limits.pipeline_shipping
    wanted = 0.8 * standalone["seq_mibps"]
    print(
        f"kernel-only pipeline here (client -> server -> file, tee -> third process -> "
        f"file; pipes, no Python buffers): {limits.pipeline_alone:.0f} MiB/s alone, "
        f"{ceiling:.0f} MiB/s shipping. pyrepl async ships {asyn['seq_mibps']:.0f} MiB/s = "
        f"{asyn['seq_mibps'] / ceiling:.2f}x that; 80% of pyrepl standalone would be "
        f"{wanted:.0f} MiB/s = {wanted / ceiling:.2f}x"
    )
    print(
        f"CPU per MiB of 1MiB writes: primary standalone {standalone['cpu_ms_per_mib']:.2f} ms, "
        f"primary async {asyn['cpu_ms_per_mib']:.2f} ms + secondary "
        f"{asyn['peer_ms_per_mib']:.2f} ms, on the same {os.cpu_count()} cores as the client"
    )
    base = results.get("pyrepl sync baseline")
    baseline_checks = []
    if base is not None:
        print(
            f"pyrepl sync (fencing resource-only) vs the baseline checkout, 4KiB sync: "
            f"{sync['sync4k_us']:.0f} vs {base['sync4k_us']:.0f} us = "
            f"{sync['sync4k_us'] / base['sync4k_us']:.3f}x"
        )
        baseline_checks.append(
            (
                "sync 4KiB latency within 5% of the baseline (connected path)",
                sync["sync4k_us"] / base["sync4k_us"],
                1.05,
                False,
            )
        )
    checks = [
        *mirror_checks(results),
        *baseline_checks,
        (
            "standalone throughput >= 50% of nbdkit",
            standalone["seq_mibps"] / peer["seq_mibps"],
            0.5,
            True,
        ),
        (
            "sync 4KiB latency <= 2x physical limit (client-observed)",
            sync["sync4k_us"] / limit_us,
            2.0,
            False,
        ),
        (
            "sync 4KiB latency <= 2x physical limit (inside the server)",
            server_us / limit_us,
            2.0,
            False,
        ),
        (
            "async throughput >= 80% of standalone",
            asyn["seq_mibps"] / standalone["seq_mibps"],
            0.8,
            True,
        ),
    ]
    failed = 0
    for label, value, target, at_least in checks:
        ok = value >= target if at_least else value <= target
        failed += not ok
        print(f"{'PASS' if ok else 'MISS'}  {label}: {value:.2f} (target {target:g})")
    return 1 if failed else 0
