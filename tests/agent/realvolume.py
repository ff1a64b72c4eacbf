"""A real pyrepl volume for the real-process agent cluster (tests/agent/realproc.py): two
`drorch repl serve` processes, one per site, started from the agents' own cluster files
(the argv the driver builds, so each daemon's fence-peer hook is `drorch repl fence-peer`
against the witness, through the same proxy as its agent), with the replication link
through cuttable proxies:

    data@a1 listens R      dials R+1 through proxy rab
    data@b1 listens R+1    dials R   through proxy rba

The guest `db` writes to it (`vms[0].volumes`), so "primary" in the role logs includes
the volume, and the shipped runbook promotes it at the witness's epoch. Each daemon's
NBD export takes qemu-io as the client. Stopped by PID on close.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drorch.clock import SystemClock
from drorch.envbuild import build_environment_report
from drorch.model.loader import load_cluster
from drorch.replication.pyrepl.control import ControlClient
from drorch.replication.pyrepl.control_path import replica_control_path
from drorch.replication.pyrepl.driver import PyreplReplicator
from drorch.testing.tcp_proxy import TcpProxy
from tests.ports import free_port_block

if TYPE_CHECKING:
    from tests.agent.realproc import RealCluster

SIZE = 16 * 1024 * 1024
REGION = 64 * 1024
NODES = ("a1", "b1")


def volume_config(tmp: Path, mode: str) -> dict[str, Any]:
    port, nbd = free_port_block(2), free_port_block(2)
    (tmp / "disks").mkdir(exist_ok=True)
    return {
        "name": "data",
        "driver": "pyrepl",
        "mode": mode,
        "size": f"{SIZE // (1024 * 1024)}MiB",
        "port": port,
        "paths": {n: f"disks/data-{n}.img" for n in NODES},
        "pyrepl": {"region_size": "64KiB", "nbd_port": nbd},
    }


class Replicas:
    def __init__(self, rc: RealCluster, volume: dict[str, Any]) -> None:
        self.rc = rc
        self.port = int(volume["port"])
        self.nbd = int(volume["pyrepl"]["nbd_port"])
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        rc.proxies["rab"] = TcpProxy(("127.0.0.1", 0), ("127.0.0.1", self.port + 1)).start()
        rc.proxies["rba"] = TcpProxy(("127.0.0.1", 0), ("127.0.0.1", self.port)).start()

    def control(self, node: str) -> Path:
        return replica_control_path(self.rc.tmp, "data", node)

    def backing(self, node: str) -> Path:
        return self.rc.tmp / "disks" / f"data-{node}.img"

    def argv(self, node: str) -> list[str]:
        cfg = self.rc.cfgs[node]
        cluster = load_cluster(cfg)
        env, _ = build_environment_report(cluster, self.rc.tmp, SystemClock())
        env.config_file = cfg
        rep = env.replicators[("data", node)]
        assert isinstance(rep, PyreplReplicator), rep
        argv = rep._serve_argv()  # the driver's own command line (test-only access)
        env.close()
        proxy = self.rc.proxies["rab" if node == "a1" else "rba"]
        argv[argv.index("--peer") + 1] = f"127.0.0.1:{proxy.port}"
        return argv

    def start(self, node: str) -> None:
        self.control(node).parent.mkdir(parents=True, exist_ok=True)
        log = open(self.rc.tmp / f"repl-{node}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.procs[node] = subprocess.Popen(
            self.argv(node), cwd=self.rc.tmp, env=self.rc.env, stdout=log, stderr=log
        )
        log.close()

    def call(self, node: str, op: str, **args: Any) -> Any:
        return ControlClient(self.control(node), timeout=10.0).call(op, **args)

    def status(self, node: str) -> dict[str, Any]:
        try:
            return dict(self.call(node, "status"))
        except Exception:  # not up (yet), or killed
            return {}

    def day0(self) -> None:
        """Both up, A primary (forced: a brand-new pair), the initial full sync done."""
        from tests.agent.realproc import until

        for node in NODES:
            self.start(node)
        until(lambda: all(self.status(n) for n in NODES), 15, "both replicas to answer")
        self.call("a1", "promote", force=True, accept_data_loss=True)
        until(
            lambda: (
                self.status("b1").get("disk") == "UpToDate"
                and self.status("a1").get("connection") == "Connected"
            ),
            30,
            "the initial full sync",
        )

    def write(self, node: str, pattern: int, offset: int, length: int) -> str:
        """qemu-io through the node's NBD export; returns its output (fails the test if
        the write is not acknowledged)."""
        index = NODES.index(node)
        url = f"nbd://127.0.0.1:{self.nbd + index}/data"
        done = subprocess.run(
            ["qemu-io", "-f", "raw", "-c", f"write -P {pattern:#x} {offset} {length}", url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and f"wrote {length}/{length}" in done.stdout, done
        return done.stdout

    def holds(self, node: str, pattern: int, offset: int, length: int) -> bool:
        with self.backing(node).open("rb") as f:
            f.seek(offset)
            return f.read(length) == bytes([pattern]) * length

    def kill(self, node: str) -> None:
        p = self.procs.pop(node, None)
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)

    def pids(self) -> list[int]:
        """Every live daemon's pid: those this helper started and any the agents started
        (`up`), as each reports in its status."""
        found = {p.pid for p in self.procs.values() if p.poll() is None}
        for node in NODES:
            st = self.status(node)
            pid = st.get("pid") or st.get("extra", {}).get("pid")
            if pid:
                found.add(int(pid))
        return sorted(found)

    def close(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for p in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
