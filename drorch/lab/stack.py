"""The whole lab cluster on top of the namespaces and site daemons (`drorch lab up --vms N`).

In order, each step idempotent (what runs is left running):
1. the network (siteA, siteB, witness, wan), both sites' libvirtd, the WAN proxy;
2. certificates made on the spot (witness, each site's witness client, each agent);
3. `drorch quorumd` in the witness namespace (`--init` the first time);
4. the cluster file (`labs/<name>/cluster.yaml`), a normal one;
5. per VM a pyrepl volume, `drorch repl serve` in each site's namespace, day-0 primary
   at A; its NBD export at A is the guest's disk;
6. per VM a heartbeat guest at A (disk=1: the counter on its disk, flushed, then
   `ACKED n` on the console);
7. an agent per site (`drorch agent run` in the site's namespace, soft watchdog).
Every process has a PID file under `labs/<name>/pids/`; `down` stops them by PID.
`status` reads them back: see `drorch.lab.stack_status`.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from drorch.lab.cluster_full import NODES, LabFiles, LabSpec, full_cluster_yaml, quorumd_yaml
from drorch.lab.faults import namespace_pids
from drorch.lab.lab import Lab
from drorch.lab.processes import cmdline, live_pid, spawn_detached, stop_pid
from drorch.lab.stack_status import stack_status
from drorch.wait import wait_until

REPO = Path(__file__).resolve().parents[2]


class StackError(Exception):
    """A part of the lab cluster did not come up; the message says which and where."""


class LabStack:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.layout = lab.layout
        self.files = LabFiles(lab.layout)
        self.clock = lab.clock
        self.progress: list[str] = []

    def _say(self, text: str) -> None:
        self.progress.append(text)
        print(text, file=sys.stderr, flush=True)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DRORCH_STATE_DIR"] = str(self.files.drorch_state)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        return env

    def drorch(
        self, netns: str, args: list[str], *, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """`python -m drorch ARGS` inside `netns` with the lab's environment, exactly as an
        operator there would type it; its output captured as text. Raises
        subprocess.TimeoutExpired after `timeout` seconds."""
        argv = ["ip", "netns", "exec", netns, sys.executable, "-m", "drorch", *args]
        return subprocess.run(
            argv, env=self._env(), capture_output=True, text=True, timeout=timeout
        )

    def _spawn(self, what: str, argv: list[str], netns: str, expect: str) -> int:
        pid_file = self.files.pid(what)
        running = live_pid(pid_file, expect)
        if running is not None:
            return running
        return spawn_detached(
            argv,
            log=self.files.log(what),
            pid_file=pid_file,
            netns=netns,
            env=self._env(),
            cwd=self.files.root,
        )

    # ------------------------------------------------------------------ up
    def up(self, spec: LabSpec) -> None:
        self._say("network, site daemons and guest image")
        image = self.lab.up()
        self.lab.wan.ensure()
        fingerprint = self._certs()
        self._quorumd()
        runbook = REPO / "runbooks" / "site-failover.yaml"
        failover = "automatic" if runbook.exists() else "manual"
        text = full_cluster_yaml(
            self.layout,
            spec,
            self.files,
            fingerprint,
            failover=failover,
            runbook=str(runbook) if runbook.exists() else None,
        )
        self.files.cluster.parent.mkdir(parents=True, exist_ok=True)
        self.files.cluster.write_text(text)
        self._say(f"cluster file {self.files.cluster} (agent.failover: {failover})")
        from drorch.model.loader import load_cluster

        cluster = load_cluster(self.files.cluster)
        self._volumes(cluster)
        self._guests(cluster, image)
        self._agents()

    def restore(self) -> None:
        """Bring back every daemon of the cluster that is down (a killed site's
        libvirtd, replication daemons and agent; a killed witness) and leave the guests
        alone: where a guest runs after a fault is the agents' business, not the lab's
        (`up` would start a guest that runs nowhere at A). For `lab torture`."""
        from drorch.model.loader import load_cluster

        self.lab.up()
        self.lab.wan.ensure()
        self._quorumd()
        # not waiting for the pairs to connect: a killed primary that wrote alone comes
        # back split-brained, and it is the agents' rejoin that discards and reconnects
        self._volumes(load_cluster(self.files.cluster), connect_wait=0)
        self._agents()

    def _certs(self) -> str:
        from drorch.quorum.tls import fingerprint_of, generate_self_signed

        names = ["witness", *self.layout.site_names, *NODES.values()]
        for name in names:
            if not (self.files.certs / f"{name}.crt").exists():
                generate_self_signed(name, self.files.certs)
        return fingerprint_of(self.files.certs / "witness.crt")

    def _quorumd(self) -> None:
        witness = self.layout.witness
        assert witness is not None
        self.files.witness_dir.mkdir(parents=True, exist_ok=True)
        self.files.quorumd_config.write_text(quorumd_yaml(self.layout, self.files, 6000, 3000))
        argv = [
            sys.executable,
            "-m",
            "drorch",
            "quorumd",
            "--config",
            str(self.files.quorumd_config),
        ]
        if not (self.files.witness_dir / "quorumd.state").exists():
            argv.append("--init")
        pid = self._spawn("quorumd", argv, witness.netns, "quorumd")
        self._say(f"witness: quorumd pid {pid} in {witness.netns}")

    def _volumes(self, cluster: Any, connect_wait: float = 30.0) -> None:
        from drorch.environment import Environment
        from drorch.replication.base import ReplicationError
        from drorch.replication.bringup import replicas_up
        from drorch.replication.pyrepl.driver import PyreplReplicator

        env = Environment(
            clock=self.clock,
            base_dir=self.files.root,
            state_dir=self.files.drorch_state,
            config_file=self.files.cluster,  # the daemons' fence-peer hook asks the witness
        )
        fresh = {
            v.name: not any(
                (env.base_dir / ".drorch-state" / "pyrepl" / f"{v.name}@{n}.meta").exists()
                for n in v.paths
            )
            for v in cluster.volumes
        }
        for volume in cluster.volumes:
            for site in cluster.sites:
                node = site.nodes[0]
                peer = next(s for s in cluster.sites if s is not site).nodes[0]
                rep = PyreplReplicator(volume, node, env, peer_address=peer.replication_address)
                argv = rep._serve_argv()
                rep.state_dir.mkdir(parents=True, exist_ok=True)
                self.files.disk(volume.name, node.name).parent.mkdir(parents=True, exist_ok=True)
                what = f"repl-{volume.name}@{node.name}"
                netns = self.layout.site(site.name).netns
                self._spawn(what, argv, netns, "repl serve")
                answers = functools.partial(_answers, rep)
                if not wait_until(self.clock, answers, self.clock.monotonic() + 20, interval=0.1):
                    raise StackError(f"{what} did not answer; see {self.files.log(what)}")
        rows, problems = [], []
        for volume in cluster.volumes:
            # day 0 only for a volume that never ran; later, roles are left as they are
            first = self.layout.site_names[0] if fresh[volume.name] else None
            try:
                result = replicas_up(
                    cluster, env, [volume.name], initial_primary=first, connect_wait=connect_wait
                )
            except ReplicationError as exc:
                raise StackError(f"{volume.name}: {exc}") from None
            rows += result.rows
            problems += result.problems
        for row in rows:
            self._say(f"volume {row.volume}@{row.node}: {row.action} ({row.role}, {row.disk})")
        if problems:
            raise StackError("; ".join(problems))

    def _guests(self, cluster: Any, image: Any) -> None:
        from drorch.lab.cluster_config import guest_serial_log
        from drorch.lab.guest import GuestSpec, domain_xml, wait_heartbeat
        from drorch.virt.base import NoSuchVM, VMState
        from drorch.virt.libvirt import LibvirtHypervisor
        from drorch.virt.xmlmap import nbd_disk_xml

        a, b = self.layout.sites
        hyps = {
            s.name: LibvirtHypervisor.connect(self.layout.local_uri(s.name), s.name) for s in (a, b)
        }
        try:
            for vm in cluster.vms:
                volume = cluster.volume(vm.volumes[0])
                states: dict[str, VMState | None] = {}
                for name, hyp in hyps.items():
                    try:
                        states[name] = hyp.state(vm.name)
                    except NoSuchVM:
                        states[name] = None
                where = [n for n, st in states.items() if st == VMState.RUNNING]
                if where:
                    self._say(f"guest {vm.name}: already runs at {where[0]}")
                    continue
                for name, st in states.items():
                    if st not in (None, VMState.UNDEFINED) and name != a.name:
                        hyps[name].undefine(vm.name)  # a stale copy (an earlier lab run)
                disk = nbd_disk_xml(volume.name, a.address, volume.pyrepl.nbd_port)
                spec = GuestSpec(vm.name, cmdline="disk=1", disk_xml=disk)
                log = Path(guest_serial_log(self.layout, vm.name))
                hyps[a.name].define(domain_xml(spec, image, log))
                hyps[a.name].start(vm.name)
                beat = wait_heartbeat(log, self.clock, timeout=60)
                self._say(f"guest {vm.name}: runs at {a.name}, HEARTBEAT {beat}")
        finally:
            for hyp in hyps.values():
                hyp.close()
        # the definition for the other site, saved now: what a cold failover defines there
        import subprocess

        argv = [sys.executable, "-m", "drorch", "vm", "sync-xml", "-c", str(self.files.cluster)]
        done = subprocess.run(argv, env=self._env(), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise StackError(f"drorch vm sync-xml failed: {done.stderr.strip()}")
        self._say("domain XML saved for both sites (drorch vm sync-xml)")

    def _agents(self) -> None:
        for site in self.layout.sites:
            node = NODES[site.name]
            argv = [
                sys.executable,
                "-m",
                "drorch",
                "agent",
                "run",
                "-c",
                str(self.files.cluster),
                "--node",
                node,
            ]
            pid = self._spawn(f"agent-{site.name}", argv, site.netns, "agent run")
            self._say(f"agent {node}: pid {pid} in {site.netns}")
            if site.name == self.layout.site_names[0]:
                self._wait_quorum(node, site.netns)  # A first: the lease goes where it runs

    def _wait_quorum(self, node: str, netns: str, timeout: float = 20.0) -> None:
        """Until the agent at `node` holds quorum (alone at first: the witness's lease).
        Without this wait B's agent may win the first lease while A runs everything."""
        import json

        cluster = str(self.files.cluster)
        args = ["agent", "status", "-c", cluster, "--node", node, "--format", "json"]

        def held() -> bool:
            done = self.drorch(netns, args, timeout=30)
            try:
                return bool(json.loads(done.stdout)["quorum"]["held"])
            except (ValueError, KeyError, TypeError):
                return False

        if not wait_until(self.clock, held, self.clock.monotonic() + timeout, interval=0.5):
            self._say(f"agent {node}: no quorum after {timeout:g} s (see its log); going on")

    # ------------------------------------------------------------------ status
    def status(self) -> list[dict[str, Any]]:
        """One row per process and guest of the lab cluster (empty before `up --vms`)."""
        return stack_status(self.lab, self.files)

    # ------------------------------------------------------------------ down
    def down(self) -> list[str]:
        done: list[str] = []
        pids = self.files.root / "pids"
        files = sorted(pids.glob("*.pid")) if pids.exists() else []

        def stop(prefix: str, expect: str) -> None:
            for pid_file in [f for f in files if f.stem.startswith(prefix)]:
                pid = live_pid(pid_file, expect)
                if pid is not None:
                    done.append(f"{pid_file.stem}: {stop_pid(pid, expect, self.clock)}")
                pid_file.unlink(missing_ok=True)

        stop("agent-", "agent run")  # first: nothing may act on what is being stopped
        done += self._undefine_guests()
        done += self.lab.down_sites()  # guests, then libvirtd: no guest outlives its disk
        stop("repl-", "repl serve")
        stop("quorumd", "quorumd")
        for place in self.lab.network.places:  # what is left (soft watchdogs): by PID
            for pid in namespace_pids(place.netns):
                what = cmdline(pid)
                if what:
                    done.append(f"left in {place.netns}: {stop_pid(pid, what, self.clock, 5)}")
        done += self.lab.down_network()
        done += self._forget()
        return done

    def _undefine_guests(self) -> list[str]:
        """Destroy and undefine the lab's guests at both sites: a definition must not
        outlive the disks it names (the next `up` makes new ones)."""
        done = []
        for site in self.layout.sites:
            if not self.lab.sites[site.name].is_up():
                continue
            uri = ["virsh", "-c", self.layout.local_uri(site.name)]
            listed = self.lab.runner.run([*uri, "list", "--all", "--name"], timeout=15)
            for dom in listed.stdout.split() if listed.ok else []:
                if re.fullmatch(r"vm\d+", dom):
                    self.lab.runner.run([*uri, "destroy", dom], timeout=15)
                    self.lab.runner.run([*uri, "undefine", dom], timeout=15)
                    done.append(f"undefined guest {dom} at {site.name}")
        return done

    def _forget(self) -> list[str]:
        """The cluster's data goes with it: the next `up` is day 0 again (replicas with
        no history, a fresh witness state, counters from 0). Certificates are kept."""
        import shutil

        if not self.files.cluster.exists():
            return []
        gone = [
            self.files.root / "disks",
            self.files.root / ".drorch-state",
            self.files.drorch_state,
            self.files.witness_dir / "quorumd.state",
        ]
        gone += list(self.layout.guest_dir.glob("vm*.serial.log"))
        for path in gone:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        self.files.cluster.unlink()
        return ["removed the cluster's disks, replica metadata and witness state"]


def _answers(rep: Any) -> bool:
    from drorch.replication.base import ReplicationError

    try:
        rep.status()
    except (ReplicationError, OSError):
        return False
    return True
