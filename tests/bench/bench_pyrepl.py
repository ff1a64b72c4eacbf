"""pyrepl throughput and sync-write latency against nbdkit's file plugin, in one run.

One NBD client for everything (`qemu-img bench`), one backing directory for everything
(DRORCH_BENCH_DIR, default /var/tmp; DRORCH_BENCH_DIR_B moves the secondaries' backing
files, and the second file of the fsync probes, to another file system):

  1. nbdkit file plugin            (the peer every ratio refers to)
  2. pyrepl standalone             (primary, no peer)
  3. pyrepl async, peer on loopback
  4. pyrepl sync,  peer on loopback
  5. QEMU active mirror: a primary qemu-storage-daemon with blockdev-mirror
     copy-mode=write-blocking to a secondary qemu-storage-daemon over NBD, with the
     secondary's export writethrough (the target durable too: the peer for pyrepl sync,
     ratio target <= 1.0x) and as shipped (the target not flushed: printed beside it,
     see qsd_mirror.py), and copy-mode=background (the peer for async). Every 4 KiB run
     also counts the device's completed cache flushes per write (disk_flushes.py).

  6. with DRORCH_BENCH_BASELINE=CHECKOUT (e.g. a `git worktree` of the commit before a
     change): "pyrepl sync baseline", the same sync pair run from that checkout, in the
     same rounds. The fencing freeze must not slow the connected path: sync 4 KiB latency
     within 5% of the baseline's.

Figures: 1 MiB sequential writes (MiB/s, queue depth 4) and 4 KiB synchronous writes
(`-t writethrough`: every write is FUA; latency = median over runs of elapsed/count).
The physical limit of a sync write is one local fsync plus one loopback round trip,
measured here too. Targets: standalone >= 50% of nbdkit's throughput; sync 4 KiB latency
<= 2x the physical limit; async >= 80% of standalone's throughput.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

try:
    from tests.bench.disk_flushes import flushes
    from tests.bench.pyrepl_floor import protocol_c_floor, shipping_floor
    from tests.bench.pyrepl_report import Limits, report
    from tests.bench.qsd_mirror import mirror_idle, qsd_mirror
except ImportError:  # run as a script: python tests/bench/bench_pyrepl.py
    from disk_flushes import flushes  # type: ignore[no-redef]
    from pyrepl_floor import protocol_c_floor, shipping_floor  # type: ignore[no-redef]
    from pyrepl_report import Limits, report  # type: ignore[no-redef]
    from qsd_mirror import mirror_idle, qsd_mirror  # type: ignore[no-redef]

SIZE_MIB = 256
RUNS = int(os.environ.get("DRORCH_BENCH_RUNS", "7"))
SEQ_COUNT = 256  # 1 MiB writes per run
SYNC_COUNT = 1000  # 4 KiB writes per run
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def qemu_bench(uri: str, *args: str) -> float:
    argv = ["qemu-img", "bench", "-w", "-f", "raw", *args, uri]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)
    m = re.search(r"Run completed in ([\d.]+) seconds", out.stdout)
    if not m:
        raise RuntimeError(f"unexpected qemu-img bench output: {out.stdout}{out.stderr}")
    return float(m.group(1))


def quiesce(targets: dict[str, Target]) -> None:
    """Before each measurement: no replica still catching up, no dirty page cache left
    by the previous run, so nobody pays for someone else's writeback."""
    for target in targets.values():
        target.settle()
    os.sync()


def warm_up(uri: str) -> None:
    """Write every block once, so no target pays for sparse-file allocation later."""
    qemu_bench(uri, "-t", "none", "-s", "1M", "-c", str(SIZE_MIB), "-d", "4")


def seq_mibps(uri: str) -> float:
    return SEQ_COUNT / qemu_bench(uri, "-t", "none", "-s", "1M", "-c", str(SEQ_COUNT), "-d", "4")


def sync4k_us(uri: str) -> float:
    elapsed = qemu_bench(uri, "-t", "writethrough", "-s", "4k", "-c", str(SYNC_COUNT), "-d", "1")
    return elapsed / SYNC_COUNT * 1e6


@contextmanager
def nbdkit(path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        ["nbdkit", "-f", "-i", "127.0.0.1", "-p", str(port), "file", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"nbd://127.0.0.1:{port}"
    finally:
        stop(proc)


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


def backing_dir(root: Path, role: str) -> Path:
    """Where a site's backing file lives. DRORCH_BENCH_DIR_B puts the secondaries' on
    another file system (another disk), as two real sites would have."""
    other = os.environ.get("DRORCH_BENCH_DIR_B")
    if role != "secondary" or not other:
        return root
    path = Path(other) / root.name
    path.mkdir(parents=True, exist_ok=True)
    return path


def serve(
    root: Path,
    label: str,
    role: str,
    mode: str,
    peer: int | None,
    nbd: bool,
    repo: Path = REPO,
) -> tuple[subprocess.Popen[bytes], int, int]:
    listen, nbd_port = free_port(), free_port()
    argv = [
        sys.executable,
        "-m",
        "drorch",
        "repl",
        "serve",
        "--name",
        "vol",
        "--backing",
        str(backing_dir(root, role) / f"{label}.img"),
        "--size",
        f"{SIZE_MIB}MiB",
        "--role",
        role,
        "--mode",
        mode,
        "--listen",
        f"127.0.0.1:{listen}",
        "--control",
        str(root / f"{label}.ctl"),
    ]
    if peer is not None:
        argv += ["--peer", f"127.0.0.1:{peer}"]
    if nbd:
        argv += ["--nbd", f"127.0.0.1:{nbd_port}"]
    log = open(root / f"{label}.log", "ab")  # noqa: SIM115 - closed with the process
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=repo, env=env)
    log.close()
    wait_port(listen)
    return proc, listen, nbd_port


def control(root: Path, label: str) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "drorch",
            "repl",
            "status",
            "--control",
            str(root / f"{label}.ctl"),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=REPO,
    )
    return dict(json.loads(out.stdout))


def wait_for(root: Path, label: str, check: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check(control(root, label)):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{label} did not settle: {control(root, label)}")


@dataclass
class Target:
    uri: str
    settle: Callable[[], None]
    pids: tuple[int, ...] = ()  # (primary, secondary) for pyrepl


def cpu_seconds(pid: int) -> float:
    """User + system time of a whole process, exited threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def pyrepl(root: Path, mode: str | None, repo: Path = REPO, suffix: str = "") -> Iterator[Target]:
    """mode None: standalone primary. Else a primary `a` with a secondary `b`; `repo`:
    the checkout whose drorch serves (a baseline to compare with)."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        peer = None
        if mode is not None:
            b, peer, _ = serve(root, f"b-{mode}{suffix}", "secondary", mode, None, False, repo)
            procs.append(b)
        label = f"a-{mode or 'standalone'}{suffix}"
        a, _, nbd_port = serve(root, label, "primary", mode or "async", peer, True, repo)
        procs.append(a)
        wait_port(nbd_port)

        def settled() -> None:
            if mode is not None:
                wait_for(
                    root,
                    label,
                    lambda s: (
                        s["connection"] == "Connected"
                        and s["lag_bytes"] == 0
                        and s["peer_disk"] == "UpToDate"
                    ),
                )

        settled()
        yield Target(
            f"nbd://127.0.0.1:{nbd_port}/vol", settled, (a.pid, *(p.pid for p in procs[:-1]))
        )
    finally:
        for proc in reversed(procs):
            stop(proc)


def fsync_latency(root: Path, count: int = 2000, name: str = "fsync.probe") -> float:
    path = root / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, bytes(count * 4096), 0)
        os.fsync(fd)
        block = os.urandom(4096)
        samples = []
        for i in range(count):
            t = time.perf_counter()
            os.pwrite(fd, block, i * 4096)
            os.fdatasync(fd)
            samples.append(time.perf_counter() - t)
        return statistics.median(samples)
    finally:
        os.close(fd)
        path.unlink()


def fsync_pair_latency(root: Path, count: int = 400) -> float:
    """A sync write makes both sites' copies durable at the same moment. Two writers,
    each pwrite + fdatasync on its own file (the second where the secondaries' backing
    files are: the same disk unless DRORCH_BENCH_DIR_B says otherwise), at once."""
    results: list[float] = []
    dirs = (root, backing_dir(root, "secondary"))
    threads = [
        threading.Thread(
            target=lambda n=n: results.append(fsync_latency(dirs[n], count, f"pair{n}.probe"))
        )
        for n in (0, 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return max(results)  # a sync write waits for the slower of the two


def loopback_rtt(count: int = 5000) -> float:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def echo() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(64):
                conn.sendall(data)

    t = threading.Thread(target=echo)
    t.start()
    samples = []
    with socket.create_connection(srv.getsockname()) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            start = time.perf_counter()
            c.sendall(b"x" * 32)
            c.recv(64)
            samples.append(time.perf_counter() - start)
    t.join(10)
    srv.close()
    return statistics.median(samples)


def main() -> int:
    """All targets run side by side and are measured round-robin, so drift in a shared
    machine's disk or CPU hits every target alike; medians over the rounds."""
    base = Path(os.environ.get("DRORCH_BENCH_DIR", "/var/tmp"))
    with tempfile.TemporaryDirectory(prefix="bench-pyrepl-", dir=base) as tmp, ExitStack() as stack:
        root = Path(tmp)
        if os.environ.get("DRORCH_BENCH_DIR_B"):
            stack.callback(shutil.rmtree, backing_dir(root, "secondary"), True)
        nk = root / "nbdkit.img"
        with open(nk, "wb") as f:
            f.truncate(SIZE_MIB * 1024 * 1024)
        targets: dict[str, Target] = {
            "nbdkit file": Target(stack.enter_context(nbdkit(nk)), lambda: None)
        }
        for mode in (None, "async", "sync"):
            targets[f"pyrepl {mode or 'standalone'}"] = stack.enter_context(pyrepl(root, mode))
        baseline = os.environ.get("DRORCH_BENCH_BASELINE")
        if baseline:
            targets["pyrepl sync baseline"] = stack.enter_context(
                pyrepl(root, "sync", Path(baseline).resolve(), "-baseline")
            )
        # QEMU's mirror: the peers. "durable": the secondary's export is writethrough, so
        # the target is flushed before the guest's FUA write completes (qsd_mirror.py)
        for copy_mode, durable in (
            ("write-blocking", True),
            ("write-blocking", False),
            ("background", False),
        ):
            label = f"qsd-{copy_mode}{'-durable' if durable else ''}"
            uri, pids = stack.enter_context(
                qsd_mirror(
                    root,
                    label,
                    copy_mode,
                    SIZE_MIB,
                    backing_dir(root, "secondary"),
                    durable_target=durable,
                )
            )
            name = f"qemu mirror {copy_mode}{', durable target' if durable else ''}"
            targets[name] = Target(uri, lambda label=label: mirror_idle(label, root), pids)
        for target in targets.values():
            warm_up(target.uri)
            target.settle()
        samples: dict[str, dict[str, list[float]]] = {
            name: {
                "seq_mibps": [],
                "sync4k_us": [],
                "flushes_per_write": [],
                "cpu_ms_per_mib": [],
                "peer_ms_per_mib": [],
            }
            for name in targets
        }
        fsyncs, pairs, rtts, inside, floors, ships = [], [], [], [], [], []
        for round_no in range(RUNS):
            order = list(targets.items())
            if round_no % 2:
                order.reverse()  # nobody always goes first or last
            for name, target in order:
                quiesce(targets)
                before = [cpu_seconds(pid) for pid in target.pids]
                samples[name]["seq_mibps"].append(seq_mibps(target.uri))
                spent = [cpu_seconds(pid) - b for pid, b in zip(target.pids, before, strict=True)]
                for key, secs in zip(("cpu_ms_per_mib", "peer_ms_per_mib"), spent, strict=False):
                    samples[name][key].append(secs * 1000 / SEQ_COUNT)
            disks = (root, backing_dir(root, "secondary"))
            for name, target in order:
                quiesce(targets)
                before_flushes = flushes(*disks)
                samples[name]["sync4k_us"].append(sync4k_us(target.uri))
                spent_flushes = flushes(*disks) - before_flushes
                samples[name]["flushes_per_write"].append(spent_flushes / SYNC_COUNT)
                if name == "pyrepl sync":
                    inside.append(control(root, "a-sync")["extra"]["sync_write_latency_us"])
            fsyncs.append(fsync_latency(root, 400))
            pairs.append(fsync_pair_latency(root))
            rtts.append(loopback_rtt(1000))
            floors.append(protocol_c_floor(root, backing_dir(root, "secondary")))
            ships.append(shipping_floor(root, 512))
        results = {
            name: {k: statistics.median(v) if v else 0.0 for k, v in figures.items()}
            for name, figures in samples.items()
        }
        server_us = statistics.median(float(x["median"]) for x in inside)
        limits = Limits(
            statistics.median(fsyncs),
            statistics.median(pairs),
            statistics.median(rtts),
            statistics.median(floors),
            statistics.median(a for a, _ in ships),
            statistics.median(b for _, b in ships),
        )
        return report(results, limits, server_us, RUNS)


if __name__ == "__main__":
    sys.exit(main())
