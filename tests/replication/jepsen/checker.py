"""A Jepsen-style checker of pyrepl sync replication with `fencing: resource-only`.

One trial: a real `drorch quorumd` (shared by the trials), a fresh pair of `drorch repl
serve` processes (A primary, B secondary, sync, A's fence-peer hook asks the witness),
site A holding the lease. A sequential writer sends numbered 4 KiB blocks over NBD, one
at a time, and records each acknowledgement. Meanwhile a nemesis, chosen per trial:

- `kill`: kill -9 of the primary;
- `stop-kill`: SIGSTOP of the secondary, then kill -9 of the primary soon after (before
  the primary notices the silence);
- `stop-fence-kill`: SIGSTOP of the secondary long enough for the primary to lose it,
  freeze, get the witness's record and write alone; then kill -9 of the primary;
- `stop-witness-down-kill`: as the last, but the hook cannot reach the witness.

Then the secondary is resumed (SIGCONT) and drorch decides, without force: B is promoted
through `drorch repl promote -c CONFIG --node b1` (the witness check) while B holds the
lease. If that is refused, A's copy is the current one: A is restarted on its own files
and promoted the same way. Whatever drorch promoted without force must hold every
acknowledged block; the ones it lacks are counted as lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from drorch.quorum.client import QuorumConnection
from tests.drbd.conftest import QuorumDaemon
from tests.pyrepl.conftest import REPO, ServeProcess, wait_until
from tests.pyrepl.nbd_client import NbdClient, NbdError

BLOCK = 4096
BLOCKS = 1024  # a 4 MiB volume: each block is written once, at offset number * BLOCK
NEMESES = ("kill", "stop-kill", "stop-fence-kill", "stop-witness-down-kill")
PEER_TIMEOUT = "1s"  # how soon a silent (stopped) secondary counts as lost


def block(number: int) -> bytes:
    head = f"block {number:08d} ".encode()
    return (head * (BLOCK // len(head) + 1))[:BLOCK]


@dataclass
class Trial:
    number: int
    nemesis: str
    acknowledged: int = 0
    lost: int = 0
    promoted: str = ""  # the site drorch let become primary without force
    refused: str = ""  # why B's promotion was refused, if it was
    seconds: float = 0.0
    lost_blocks: list[int] = field(default_factory=list)


def cluster_yaml(folder: Path, qd: QuorumDaemon, site: str, volume: str, port: int) -> Path:
    path = folder / f"cluster-{site}.yaml"
    path.write_text(
        "cluster: c1\nprimary_site: A\nsites:\n"
        "  A:\n    nodes:\n      - {name: a1, address: local}\n"
        "  B:\n    nodes:\n      - {name: b1, address: local}\n"
        f'witness:\n  address: 127.0.0.1:{port}\n  fingerprint: "{qd.fingerprint}"\n'
        f"  cert: {qd.cert(site)}\n  key: {qd.key(site)}\n"
        f"volumes:\n  - name: {volume}\n    driver: pyrepl\n    mode: sync\n    size: 4MiB\n"
        f"    port: 7789\n    paths: {{a1: {folder}/a.img, b1: {folder}/b.img}}\n"
    )
    return path


@contextlib.contextmanager
def lease(qd: QuorumDaemon, site: str) -> Iterator[QuorumConnection]:
    conn = QuorumConnection(
        f"127.0.0.1:{qd.port}", qd.fingerprint, qd.cert(site), qd.key(site), "c1", site,
        f"{site.lower()}1", timeout=5.0,
    )  # fmt: skip
    conn.connect()
    try:
        deadline = time.monotonic() + 10
        while not conn.heartbeat(1, want=True, nodes=1).granted:  # the other lease ends
            if time.monotonic() > deadline:
                raise AssertionError(f"site {site} never got the lease")
            time.sleep(0.1)
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.release()
        conn.close()


class SequentialWriter:
    """One client, one write at a time: `acked` lists what the server acknowledged."""

    def __init__(self, a: ServeProcess) -> None:
        self.acked: list[int] = []
        self.nbd = a.nbd
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with NbdClient(*self.nbd, "vol", timeout=30.0) as nbd:
                for n in range(BLOCKS):
                    nbd.write(n * BLOCK, block(n))
                    self.acked.append(n)
        except (OSError, EOFError, NbdError, AssertionError):
            return  # the primary died or refused: nothing after this was acknowledged


def drorch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drorch", *args],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip


def promote(proc: ServeProcess, config: Path, node: str) -> subprocess.CompletedProcess[str]:
    return drorch(
        "repl", "promote", "--control", str(proc.control), "-c", str(config), "--node", node,
        "--yes",
    )  # fmt: skip


def serve(
    folder: Path, label: str, role: str, peer: str | None, extra: tuple[str, ...]
) -> ServeProcess:
    proc = ServeProcess(
        folder, label, role, "sync", peer, extra=("--peer-timeout", PEER_TIMEOUT, *extra)
    )
    proc.wait_ready()
    return proc


def run_trial(folder: Path, qd: QuorumDaemon, number: int, rng: random.Random) -> Trial:
    nemesis = NEMESES[number % len(NEMESES)]
    trial = Trial(number, nemesis)
    started = time.monotonic()
    volume = "vol"  # one witness record per trial folder: a fresh volume name per trial
    witness_port = 1 if nemesis == "stop-witness-down-kill" else qd.port
    a_hook = cluster_yaml(folder / "hook", qd, "A", volume, witness_port)
    a_yaml = cluster_yaml(folder, qd, "A", volume, qd.port)
    b_yaml = cluster_yaml(folder / "b", qd, "B", volume, qd.port)
    hook = f"{sys.executable} -m drorch repl fence-peer -c {a_hook} --volume {volume} --node a1"
    procs: list[ServeProcess] = []
    try:
        b = serve(folder, "b", "secondary", None, ())
        procs.append(b)
        a = serve(folder, "a", "primary", b.listen, ("--fence-peer-cmd", hook))
        procs.append(a)
        wait_until("connected", lambda: a.status()["connection"] == "Connected")
        with lease(qd, "A"):
            writer = SequentialWriter(a)
            time.sleep(rng.uniform(0.2, 0.6))
            if nemesis != "kill":
                os.kill(b.proc.pid, signal.SIGSTOP)
                if nemesis == "stop-kill":
                    time.sleep(rng.uniform(0.05, 0.3))
                else:  # past the peer timeout: A freezes, its hook runs, maybe resumes
                    time.sleep(3.0 + rng.uniform(0.0, 1.0))
            a.kill9()
            writer.thread.join(30)
        if nemesis != "kill":
            os.kill(b.proc.pid, signal.SIGCONT)
        acked = list(writer.acked)
        trial.acknowledged = len(acked)
        with lease(qd, "B"):
            out = promote(b, b_yaml, "b1")
        winner = b
        trial.promoted = "B"
        if out.returncode != 0:
            trial.refused = out.stderr.strip().splitlines()[-1] if out.stderr else "refused"
            assert out.returncode == 3, out.stderr  # refused as unsafe, not broken
            a2 = serve(folder, "a", "secondary", None, ("--fence-peer-cmd", hook))
            procs.append(a2)
            with lease(qd, "A"):
                out = promote(a2, a_yaml, "a1")
            assert out.returncode == 0, f"neither copy may be promoted: {out.stderr}"
            winner, trial.promoted = a2, "A"
        data = winner.backing.read_bytes()
        trial.lost_blocks = [n for n in acked if data[n * BLOCK : (n + 1) * BLOCK] != block(n)]
        trial.lost = len(trial.lost_blocks)
    finally:
        for proc in procs:
            if proc.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.proc.pid, signal.SIGCONT)
                    os.kill(proc.proc.pid, signal.SIGKILL)
                proc.proc.wait(10)
    trial.seconds = round(time.monotonic() - started, 2)
    return trial


def run(root: Path, qd: QuorumDaemon, *, budget: float, seed: int, max_trials: int) -> list[Trial]:
    """Trials until the time budget is spent (every nemesis at least once)."""
    rng = random.Random(seed)
    trials: list[Trial] = []
    started = time.monotonic()
    for number in range(max_trials):
        if number >= len(NEMESES) and time.monotonic() - started > budget:
            break
        folder = root / f"trial-{number}"
        for sub in ("hook", "b"):
            (folder / sub).mkdir(parents=True)
        trials.append(run_trial(folder, qd, number, rng))
        # the next trial starts from an empty witness record for the volume
        with lease(qd, trials[-1].promoted) as conn:
            conn.current("vol")
    return trials


def report(trials: list[Trial]) -> dict[str, object]:
    return {
        "trials": len(trials),
        "acknowledged": sum(t.acknowledged for t in trials),
        "lost": sum(t.lost for t in trials),
        "by_trial": [asdict(t) for t in trials],
    }


def dump(trials: list[Trial], path: Path | None) -> str:
    summary = report(trials)
    lines = [
        f"trial {t.number} {t.nemesis:24} acknowledged {t.acknowledged:5} lost {t.lost:3} "
        f"promoted {t.promoted} ({t.seconds:.1f} s)"
        + (f"  B refused: {t.refused}" * bool(t.refused))
        for t in trials
    ]
    lines.append(
        f"jepsen: trials {summary['trials']}, acknowledged {summary['acknowledged']}, "
        f"lost {summary['lost']}"
    )
    if path is not None:
        path.write_text(json.dumps(summary, indent=1))
    return "\n".join(lines)
