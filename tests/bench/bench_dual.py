"""pyrepl two primaries: what a forwarded write costs (`python -m tests.bench dual`).

One sync pair of real `drorch repl serve` processes on loopback, two primaries allowed,
the secondary promoted beside the primary. `qemu-img bench` writes 4 KiB synchronous
(FUA) writes, one at a time, alternately at the first primary (the normal sync path:
local write, shipped, durable on both) and at the second (forwarded to the first, applied
there, shipped back, answered): interleaved rounds, medians. The expected extra cost is
one loopback round trip and two thread hops at the first primary. No target: the figure
is reported beside the normal sync write it is compared with.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    from tests.bench.bench_pyrepl import REPO, control, qemu_bench, serve, stop, wait_for
except ImportError:  # run as a script
    from bench_pyrepl import REPO, control, qemu_bench, serve, stop, wait_for  # type: ignore

RUNS = 7
COUNT = 1000


def repl(root: Path, label: str, *args: str) -> None:
    argv = [sys.executable, "-m", "drorch", "repl", *args, "--control", str(root / f"{label}.ctl")]
    subprocess.run(argv, check=True, capture_output=True, timeout=60, cwd=REPO)


def sync4k_us(uri: str) -> float:
    elapsed = qemu_bench(uri, "-t", "writethrough", "-s", "4k", "-c", str(COUNT), "-d", "1")
    return elapsed / COUNT * 1e6


def main() -> int:
    base = os.environ.get("DRORCH_BENCH_DIR", "/var/tmp")
    with tempfile.TemporaryDirectory(prefix="bench-dual-", dir=base) as tmp:
        root = Path(tmp)
        b, b_listen, b_nbd = serve(root, "b", "secondary", "sync", None, nbd=True)
        a, _, a_nbd = serve(root, "a", "primary", "sync", b_listen, nbd=True)
        try:
            wait_for(root, "a", lambda s: s["connection"] == "Connected" and s["lag_bytes"] == 0)
            repl(root, "a", "allow-two-primaries", "--yes")
            repl(root, "b", "promote", "--yes")
            wait_for(root, "a", lambda s: s["extra"]["two_primaries"]["state"] == "first-primary")
            first, second = f"nbd://127.0.0.1:{a_nbd}/vol", f"nbd://127.0.0.1:{b_nbd}/vol"
            normal: list[float] = []
            forwarded: list[float] = []
            sync4k_us(first)  # warm up both (allocation of the sparse files)
            sync4k_us(second)
            for _ in range(RUNS):
                normal.append(sync4k_us(first))
                forwarded.append(sync4k_us(second))
            inside = control(root, "a")["extra"]["sync_write_latency_us"]
        finally:
            stop(a)
            stop(b)
    n, f = statistics.median(normal), statistics.median(forwarded)
    print(f"4 KiB FUA writes, qemu-img bench -d 1, {RUNS} interleaved rounds of {COUNT}, medians")
    print(f"  normal sync write at the first primary   {n:8.1f} us")
    print(
        f"  forwarded write at the second primary    {f:8.1f} us  ({f / n:.2f}x, +{f - n:.0f} us)"
    )
    print(f"  first primary, inside the server: {inside}")
    print(f"  rounds normal:    {', '.join(f'{x:.0f}' for x in normal)}")
    print(f"  rounds forwarded: {', '.join(f'{x:.0f}' for x in forwarded)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
