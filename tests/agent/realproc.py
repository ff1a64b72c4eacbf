"""A two-site cluster of real processes on loopback, for the split-brain scenarios:
`drorch quorumd` (the witness), one `drorch agent run` per site (each with its soft
watchdog supervisor), and cuttable TCP proxies (drorch.testing.tcp_proxy) on every path
that a partition may cut: A→B and B→A membership, A→witness.

Each agent reads its own copy of the cluster file, which differs only in the ports it
dials, so that its connections to the peer and to the witness run through the proxies:

    a1 listens P      dials b1 at P+1  -> proxy ab (P+1) -> b1 (Q+1)
    b1 listens Q+1    dials a1 at Q    -> proxy ba (Q)   -> a1 (P)
    a1 -> witness via proxy aw;  b1 -> witness directly

The resources are simulated guests (hypervisor: sim, state shared in one folder), so
"primary" means "the guest db runs at this site". Timings are sub-second so that each
scenario takes seconds. Everything is stopped by PID on close.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from drorch.model.types import VM
from drorch.quorum.tls import generate_self_signed
from drorch.testing.tcp_proxy import TcpProxy
from drorch.virt.sim import sim_domain_xml
from drorch.virt.sim_store import SimStateStore
from tests.agent.realvolume import Replicas, volume_config
from tests.ports import free_port, free_port_block

TIMINGS = {
    "fencing": {"watchdog": "soft", "watchdog_timeout": "1500ms", "margin": "500ms"},
    "quorum": {"heartbeat": "300ms", "lease_timeout": "3s", "switch_delay": "500ms"},
}
WATCHDOG_TIMEOUT, TAKEOVER_WAIT = 1.5, 3.5
AGENT = {"heartbeat": "250ms", "member_timeout": "1s"}

SITE_FAILOVER = """\
name: site-failover
description: test takeover (a real engine run) that cold-starts the guest at the survivor
params:
  to: {type: str}
  from: {type: str, default: ""}
  epoch: {type: int, default: 0}
steps:
  - id: start-db
    action: shell
    with:
      argv: [PYTHON, -m, drorch, vm, failover-start, db, --to, "${params.to}", -c, CONFIG, --yes]
      timeout: 30s
  - id: note
    action: notify
    with: {file: takeover.log, message: "site ${params.to} took over at epoch ${params.epoch}"}
"""

ESCALATE = """\
name: escalate
params:
  to: {type: str}
  group: {type: "list[str]", default: []}
steps:
  - id: note
    action: notify
    with: {file: escalated.log, message: "moving ${params.group} to ${params.to}"}
"""


def until(pred: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> float:
    """Poll `pred`; return the seconds it took, or fail the test after `timeout`."""
    start = time.monotonic()
    for _ in range(int(timeout / step) + 1):  # bounded
        if pred():
            return time.monotonic() - start
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


class RealCluster:
    def __init__(
        self,
        tmp: Path,
        *,
        monitor: bool | str = False,
        failover: str = "automatic",
        shipped_runbook: bool = False,
        fence_a: dict[str, Any] | None = None,
        takeover_wait: str | None = None,
        volume: str | None = None,
        shipped_escalation: bool = False,
    ) -> None:
        """`volume`: sync|async — the guest writes to a real pyrepl volume `data`
        (tests/agent/realvolume.py), started by `start_all` (day 0: A primary).
        `monitor`: True, a command on a flag file; "domain", the guest runs at the site.
        `shipped_escalation`: escalate with drorch's own default escalate_runbook."""
        self.tmp = tmp
        self.state = tmp / "state"
        self.env = {**os.environ, "DRORCH_STATE_DIR": str(self.state)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.softdogs: set[int] = set()
        pki = tmp / "pki"
        self.fingerprint = generate_self_signed("server", pki)[2]
        for name in ("site-A", "site-B"):  # `{site}` in the cluster file names them
            generate_self_signed(name, pki)
        for node in ("a1", "b1"):
            generate_self_signed(node, tmp / "agents")
        self.witness_port = free_port()
        self.p = free_port_block(2)  # reservations never overlap: four distinct ports
        self.q = free_port_block(2)
        self.proxies = {
            "ab": TcpProxy(("127.0.0.1", self.p + 1), ("127.0.0.1", self.q + 1)).start(),
            "ba": TcpProxy(("127.0.0.1", self.q), ("127.0.0.1", self.p)).start(),
            "aw": TcpProxy(("127.0.0.1", 0), ("127.0.0.1", self.witness_port)).start(),
        }
        (tmp / "quorumd.yaml").write_text(
            yaml.safe_dump(
                {
                    "listen": f"127.0.0.1:{self.witness_port}",
                    "cert": str(pki / "server.crt"),
                    "key": str(pki / "server.key"),
                    "state_file": str(tmp / "quorumd.state"),
                    "heartbeat_ms": 300,
                    "lease_ms": 3000,
                    "switch_delay_ms": 500,
                    "clusters": {
                        "rp": {
                            "sites": {
                                "A": [str(pki / "site-A.crt")],
                                "B": [str(pki / "site-B.crt")],
                            }
                        }
                    },
                }
            )
        )
        self.flag = tmp / "db-healthy"
        self.flag.touch()
        # the domain XML saved from A, so that B can define the guest when A is gone
        (tmp / "db.xml").write_text(sim_domain_xml(VM("db", "rp-db", migratable=False)))
        vm: dict[str, Any] = {"name": "db", "domain": "rp-db", "migratable": False}
        vm["xml"] = "db.xml"
        if monitor == "domain":  # level 1: the site's hypervisor runs the guest
            vm["monitors"] = [
                {
                    "name": "db-alive",
                    "type": "domain",
                    "target": "rp-db",
                    "interval": "300ms",
                    "timeout": "250ms",
                    "level": 1,
                }
            ]
        elif monitor:
            vm["monitors"] = [
                {
                    "name": "db-alive",
                    "type": "command",
                    "target": f"test -e {self.flag}",
                    "interval": "300ms",
                    "timeout": "250ms",
                    "level": 1,
                }
            ]
        self.replicas: Replicas | None = None
        volumes = []
        if volume is not None:
            volumes.append(volume_config(tmp, volume))
            vm["volumes"] = ["data"]
        base: dict[str, Any] = {
            "cluster": "rp",
            "primary_site": "A",
            "sites": {
                "A": {"nodes": [{"name": "a1", "agent_cert": "agents/a1.crt"}]},
                "B": {"nodes": [{"name": "b1", "agent_cert": "agents/b1.crt"}]},
            },
            "vms": [vm],
            "volumes": volumes,
            **TIMINGS,
            "hypervisor": {"driver": "sim", "state_dir": "sim"},
        }
        if volumes:
            base["hypervisor"]["replication"] = "real"
        base["quorum"] = dict(base["quorum"])
        if takeover_wait is not None:
            base["quorum"]["takeover_wait"] = takeover_wait
        if fence_a is not None:
            base["sites"]["A"]["fence"] = fence_a
        self.cfg = tmp / "cluster.yaml"  # for the CLI and the runbook (no proxies)
        self._write(self.cfg, base, self.witness_port, self.p)
        self.cfgs = {
            "a1": self._write(tmp / "a1.yaml", base, self.proxies["aw"].port, self.p),
            "b1": self._write(tmp / "b1.yaml", base, self.witness_port, self.q),
        }
        agent = {
            **AGENT,
            "failover": failover,
            "runbook": "runbooks/site-failover.yaml" if shipped_runbook else "site-failover.yaml",
            "escalate_runbook": (
                "runbooks/hurricane-planned-migration.yaml"
                if shipped_escalation
                else "escalate.yaml"
            ),
            "max_restarts": 2,
            "failure_window": "1m",
        }
        for path in (self.cfg, *self.cfgs.values()):
            data = yaml.safe_load(path.read_text())
            data["agent"].update(agent)
            path.write_text(yaml.safe_dump(data))
        (tmp / "site-failover.yaml").write_text(
            SITE_FAILOVER.replace("PYTHON", sys.executable).replace("CONFIG", str(self.cfg))
        )
        (tmp / "escalate.yaml").write_text(ESCALATE)
        if volumes:
            self.replicas = Replicas(self, volumes[0])

    def _write(self, path: Path, base: dict[str, Any], wport: int, port: int) -> Path:
        """Each site presents its own certificate (`{site}`): an agent's keeper as its
        site, and a runbook it runs as the site it acts for (a promotion at B asks the
        witness as B)."""
        data = json.loads(json.dumps(base))
        data["witness"] = {
            "address": f"127.0.0.1:{wport}",
            "fingerprint": self.fingerprint,
            "cert": "pki/site-{site}.crt",
            "key": "pki/site-{site}.key",
        }
        data["agent"] = {"port": port}
        path.write_text(yaml.safe_dump(data))
        return path

    # -- processes ------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "drorch", *args], env=self.env, stderr=log, stdout=log
        )
        log.close()

    def start_witness(self, init: bool = True) -> None:
        args = ["quorumd", "--config", str(self.tmp / "quorumd.yaml")]
        self._spawn("witness", [*args, "--init"] if init else args)

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.witness_port)) == 0

        until(listening, 15, "the witness to listen")

    def stop_witness(self) -> None:
        p = self.procs.pop("witness")
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=15)

    def start_agent(self, node: str) -> None:
        self._spawn(node, ["agent", "run", "-c", str(self.cfgs[node]), "--node", node])

    def signal(self, node: str, sig: int) -> None:
        self.procs[node].send_signal(sig)

    def status(self, node: str) -> dict[str, Any] | None:
        from drorch.agent.control import ask

        proc = self.procs.get(node)
        if proc is not None and proc.poll() is not None and proc.returncode != -signal.SIGKILL:
            raise AssertionError(f"agent {node} exited {proc.returncode}:\n{self.logs()}")

        path = self.state / f"agent-rp-{node}.sock"
        try:
            answer = ask(path, {"op": "status"}, timeout=2.0)
        except (OSError, ValueError):
            return None
        pid = (answer.get("watchdog") or {}).get("pid")
        if pid:
            self.softdogs.add(int(pid))
        return answer

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "drorch", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    # -- observations ---------------------------------------------------------------------
    def vm(self, site: str) -> str:
        records = SimStateStore(self.tmp / "sim", site).read()
        return str(records.get("rp-db", {}).get("state", "undefined"))

    def roles(self) -> list[dict[str, Any]]:
        out = []
        for node in ("a1", "b1"):
            path = self.state / f"roles-rp-{node}.jsonl"
            if path.exists():
                out += [json.loads(line) for line in path.read_text().splitlines()]
        return sorted(out, key=lambda r: float(r["at"]))

    def softdog_fired(self, node: str) -> dict[str, Any] | None:
        path = self.state / f"softdog-rp-{node}.log"
        if not path.exists():
            return None
        for line in reversed(path.read_text().splitlines()):
            record = json.loads(line)
            if record.get("event") == "fired":
                return dict(record)
        return None

    def healthy(self) -> bool:
        a, b = self.status("a1") or {}, self.status("b1") or {}
        both = ["a1", "b1"]
        if a.get("members") != both or b.get("members") != both:
            return False
        return bool(a["watchdog"]["armed"] and a["watchdog"]["fed"] and b["watchdog"]["fed"])

    def start_all(self) -> None:
        if self.replicas is not None:
            self.replicas.day0()
        self.start_witness()
        self.start_agent("a1")
        until(lambda: bool((self.status("a1") or {}).get("members")), 30, "a1 to answer")
        self.start_agent("b1")
        until(self.healthy, 30, "both agents to be members and feed their watchdogs")

    def close(self) -> None:
        for node in ("a1", "b1"):
            self.status(node)  # learn the soft watchdogs' pids
        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGCONT)
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        for pid in self.softdogs:  # supervisors left behind by killed agents
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.replicas is not None:
            self.replicas.close()
        for proxy in self.proxies.values():
            proxy.close()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.tmp.glob("*.log"))
        )


@contextlib.contextmanager
def running(tmp: Path, **kwargs: Any) -> Iterator[RealCluster]:
    """A RealCluster(tmp, **kwargs) with everything started; its logs printed if the
    test fails, and every process stopped at the end."""
    c = RealCluster(tmp, **kwargs)
    try:
        c.start_all()
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.close()


def never_both_primary(
    roles: list[dict[str, Any]], stopped: dict[str, float] | None = None
) -> list[str]:
    """Walk the merged role logs in time order; report every instant at which both
    sites' last entries say primary. `stopped`: site -> when the test saw its resources
    stop without its agent logging it (the agent was killed; its watchdog fenced)."""
    now: dict[str, bool] = {}
    problems = []
    extra = [
        {"site": site, "primary": [], "at": at, "node": "(seen stopped by the test)"}
        for site, at in (stopped or {}).items()
    ]
    for r in sorted([*roles, *extra], key=lambda r: float(r["at"])):
        now[r["site"]] = bool(r["primary"])
        if len(now) == 2 and all(now.values()):
            problems.append(f"both primary at {r['at']:.3f} ({r['node']})")
    return problems
