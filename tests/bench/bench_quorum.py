"""Quorum witness at scale: 10,000 sessions (5,000 clusters × 2 sites) heartbeating at 1 Hz
against one `drorch quorumd` process.

Every site has its own certificate (10,000 distinct self-signed EC P-256 certificates, all
pinned in the daemon's config, none shared). The load generator runs in several processes
(tests/bench/quorum_loadgen.py), each with its own source addresses in 127.0.0.0/8.

Figures (targets from issue 3): daemon CPU share of one core (< 50 %), daemon RSS
(< 1 GiB), p50/p99 vote latency (p99 < 50 ms), and time to accept all connections.
There is no peer implementation run here (corosync-qnetd needs an NSS database and
corosync-qdevice clients), so no ratio is printed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from drorch.quorum.tls import generate_self_signed

CLUSTERS = int(os.environ.get("BENCH_QUORUM_CLUSTERS", "5000"))
WORKERS = int(os.environ.get("BENCH_QUORUM_WORKERS", "2"))
WINDOW = float(os.environ.get("BENCH_QUORUM_WINDOW", "20"))
WARMUP = 3.0
PER_SOURCE = 25  # sessions per source address (the daemon caps 64 pre-hello per address)

# run the daemon under cProfile counting CPU time (not wall time, which a busy box inflates)
PROFILED_DAEMON = (
    "import cProfile, sys, time\n"
    "from drorch.cli.main import cli\n"
    "out = sys.argv.pop(1)\n"
    "p = cProfile.Profile(time.process_time)\n"
    "try:\n    p.runcall(cli, sys.argv[1:], prog_name='drorch')\n"
    "except SystemExit:\n    pass\n"
    "finally:\n    p.dump_stats(out)\n"
)

TARGET_CPU = 50.0
TARGET_P99_MS = 50.0
TARGET_RSS_MIB = 1024.0


def _gen(args: tuple[Path, list[str]]) -> int:
    folder, names = args
    for name in names:
        generate_self_signed(name, folder)
    return len(names)


def site_names(cluster: int) -> tuple[str, str]:
    return f"c{cluster}-a", f"c{cluster}-b"


def make_pki(folder: Path) -> float:
    started = time.monotonic()
    generate_self_signed("server", folder)
    names = [n for c in range(CLUSTERS) for n in site_names(c)]
    chunks = [names[i::4] for i in range(4)]
    with mp.get_context("fork").Pool(2) as pool:
        pool.map(_gen, [(folder, chunk) for chunk in chunks])
    return time.monotonic() - started


def write_config(folder: Path, port: int) -> Path:
    lines = [
        f"listen: 127.0.0.1:{port}",
        "cert: server.crt",
        "key: server.key",
        "state_file: quorumd.state",
        "heartbeat_ms: 1000",
        "lease_ms: 3000",
        "switch_delay_ms: 2000",
        "clusters:",
    ]
    for c in range(CLUSTERS):
        a, b = site_names(c)
        lines += [f"  c{c}:", "    sites:", f"      A: [{a}.crt]", f"      B: [{b}.crt]"]
    path = folder / "quorumd.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def proc_cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _worker(
    port: int, server_cert: str, targets: list[Any], window: Any, ready: Any, go: Any, out: Any
) -> None:
    from tests.bench.quorum_loadgen import Worker

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    worker = Worker(port, server_cert, targets, window, ready)
    go.wait()
    out.send(worker.run(stop_after=300.0))
    out.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    from tests.bench.quorum_loadgen import Target

    with tempfile.TemporaryDirectory(prefix="bench-quorum-") as tmp:
        folder = Path(tmp)
        pki_seconds = make_pki(folder)
        print(f"pki: {2 * CLUSTERS} client certificates + 1 server in {pki_seconds:.1f}s")
        port = free_port()
        config = write_config(folder, port)
        log = (folder / "quorumd.log").open("wb")
        t0 = time.monotonic()
        profile = os.environ.get("BENCH_QUORUM_PROFILE")  # a path: run the daemon under cProfile
        prefix = ["-c", PROFILED_DAEMON, profile] if profile else ["-m", "drorch"]
        daemon = subprocess.Popen(
            [sys.executable, *prefix, "quorumd", "--config", str(config), "--init"],
            stderr=log,
            stdout=subprocess.DEVNULL,
        )
        try:
            return run_load(folder, port, daemon, t0, Target)
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(30)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait(10)
            log.close()


def run_load(
    folder: Path, port: int, daemon: subprocess.Popen[bytes], t0: float, target: Any
) -> int:
    log_path = folder / "quorumd.log"
    while "serving " not in log_path.read_text(errors="replace"):
        if daemon.poll() is not None or time.monotonic() - t0 > 120:
            print(log_path.read_text(errors="replace")[-2000:])
            print("FAIL: daemon did not start")
            return 1
        time.sleep(0.1)
    startup = time.monotonic() - t0
    print(f"daemon start-up ({2 * CLUSTERS} pinned certs validated and loaded): {startup:.1f}s")

    targets = []
    for c in range(CLUSTERS):
        for site, name in zip(("A", "B"), site_names(c), strict=True):
            i = len(targets)
            a = i // PER_SOURCE
            source = f"127.2.{a // 200}.{a % 200 + 1}"
            targets.append(
                target(
                    f"c{c}", site, str(folder / f"{name}.crt"), str(folder / f"{name}.key"), source
                )
            )
    ctx = mp.get_context("fork")
    window = ctx.Array("d", [0.0, 0.0])
    ready = ctx.Value("i", 0)
    go = ctx.Event()
    procs, pipes = [], []
    for w in range(WORKERS):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(
            target=_worker,
            args=(port, str(folder / "server.crt"), targets[w::WORKERS], window, ready, go, child),
        )
        p.start()
        child.close()
        procs.append(p)
        pipes.append(parent)
    time.sleep(1.0)
    # wait for the workers to build their client contexts (they block on `go`)
    time.sleep(2.0 + len(targets) / WORKERS / 1500)
    connect_started = time.monotonic()
    go.set()
    total = len(targets)
    deadline = connect_started + 180
    while ready.value < total and time.monotonic() < deadline and daemon.poll() is None:
        time.sleep(0.05)
    accept_seconds = time.monotonic() - connect_started
    accepted = ready.value
    time.sleep(WARMUP)
    start = time.monotonic()
    window[0], window[1] = start, start + WINDOW
    cpu0 = proc_cpu_seconds(daemon.pid)
    rss_max = 0.0
    while time.monotonic() < start + WINDOW:
        rss_max = max(rss_max, proc_rss_mib(daemon.pid))
        time.sleep(1.0)
    cpu1 = proc_cpu_seconds(daemon.pid)
    elapsed = time.monotonic() - start
    rss_max = max(rss_max, proc_rss_mib(daemon.pid))
    results = [p.recv() for p in pipes]
    for p in procs:
        p.join(30)
    latencies = [x for r in results for x in r.latencies_ms]
    user_share = (cpu1[0] - cpu0[0]) / elapsed * 100
    system_share = (cpu1[1] - cpu0[1]) / elapsed * 100
    cpu_share = user_share + system_share
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    dropped = sum(r.dropped for r in results)
    errors = sum(r.connect_errors for r in results)
    unanswered = sum(r.unanswered for r in results)
    votes: dict[str, tuple[bool, int, str | None]] = {}
    for r in results:
        votes.update(r.last_vote)
    holders = [
        sum(votes.get(f"c{c}/{s}", (False, 0, None))[0] for s in "AB") for c in range(CLUSTERS)
    ]
    epochs = {v[1] for v in votes.values()}

    ok = True

    def figure(name: str, value: float, unit: str, target_text: str, met: bool) -> None:
        nonlocal ok
        ok &= met
        print(
            f"{name:<34} {value:>10.2f} {unit:<4} target {target_text:<10} "
            + ("ok" if met else "MISSED")
        )

    print(f"sessions accepted: {accepted}/{total} (connect errors {errors}, dropped {dropped})")
    figure("time to accept all connections", accept_seconds, "s", "(report)", accepted == total)
    figure("daemon CPU, share of one core", cpu_share, "%", "< 50 %", cpu_share < TARGET_CPU)
    print(f"  (user {user_share:.1f} %, system {system_share:.1f} %)")
    figure("daemon RSS (max in window)", rss_max, "MiB", "< 1024 MiB", rss_max < TARGET_RSS_MIB)
    figure("vote latency p50", p50, "ms", "(report)", p50 == p50)
    figure("vote latency p99", p99, "ms", "< 50 ms", p99 < TARGET_P99_MS)
    rate = len(latencies) / WINDOW
    print(
        f"votes measured: {len(latencies)} over {WINDOW:g}s ({rate:.0f}/s), unanswered {unanswered}"
    )
    one_holder = sum(1 for h in holders if h == 1)
    print(
        f"clusters with exactly one holder: {one_holder}/{CLUSTERS}; epochs seen: {sorted(epochs)}"
    )
    ok &= one_holder == CLUSTERS and epochs == {1} and dropped == 0
    for r in results:
        for e in r.errors:
            print(f"  worker error: {e}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
