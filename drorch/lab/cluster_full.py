"""The cluster file and the witness config of the whole lab (`drorch lab up --vms N`).

A normal cluster file, used by every other command (`drorch status -c`, `drorch migrate
-c`, `drorch agent run -c`): two sites with one node each (`address: local`, each with
its own `replication_address` inside its namespace), the witness in the `witness`
namespace, one pyrepl volume per VM (primary at A, NBD export = the guest's disk), one
heartbeat guest per VM, agents with soft watchdogs. Every path is absolute: the file
lives in the lab's state directory and names that lab only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from drorch.lab.cluster_config import guest_serial_log
from drorch.lab.layout import LabLayout

REPL_PORT = 7789  # volume i replicates on REPL_PORT + i (the WAN proxies 4 of them)
NBD_PORT = 10809  # volume i exports on NBD_PORT + 2i at A, + 2i + 1 at B
AGENT_PORT = 7900
WITNESS_PORT = 7443
NODES = {"siteA": "a1", "siteB": "b1"}
MAX_VMS = 4


@dataclass(frozen=True)
class LabSpec:
    """What `lab up` builds: how many guests, and the replication mode of their disks."""

    vms: int = 1
    mode: str = "sync"
    disk_size: str = "16MiB"

    def __post_init__(self) -> None:
        if not 1 <= self.vms <= MAX_VMS:
            raise ValueError(f"--vms must be between 1 and {MAX_VMS} (one replication port each)")
        if self.mode not in ("sync", "async"):
            raise ValueError("--mode must be sync or async")

    @property
    def vm_names(self) -> list[str]:
        return [f"vm{i}" for i in range(1, self.vms + 1)]


class LabFiles:
    """Where the whole lab keeps its files (all under the lab's state directory)."""

    def __init__(self, layout: LabLayout) -> None:
        self.layout = layout
        self.root = layout.state_dir

    @property
    def cluster(self) -> Path:
        return self.root / "cluster.yaml"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def witness_dir(self) -> Path:
        return self.root / "witness"

    @property
    def quorumd_config(self) -> Path:
        return self.witness_dir / "quorumd.yaml"

    @property
    def drorch_state(self) -> Path:
        """$DRORCH_STATE_DIR of every drorch command and agent of this lab."""
        return self.root / "drorch-state"

    def disk(self, vm: str, node: str) -> Path:
        return self.root / "disks" / f"{vm}-{node}.img"

    def pid(self, what: str) -> Path:
        return self.root / "pids" / f"{what}.pid"

    def log(self, what: str) -> Path:
        return self.root / "logs" / f"{what}.log"


def cluster_name(layout: LabLayout) -> str:
    return f"lab-{layout.name}"


def quorumd_yaml(layout: LabLayout, files: LabFiles, lease_ms: int, switch_ms: int) -> str:
    witness = layout.witness
    assert witness is not None
    data = {
        "listen": f"{witness.address}:{WITNESS_PORT}",
        "cert": str(files.certs / "witness.crt"),
        "key": str(files.certs / "witness.key"),
        "state_file": str(files.witness_dir / "quorumd.state"),
        "heartbeat_ms": 1000,
        "lease_ms": lease_ms,
        "switch_delay_ms": switch_ms,
        "clusters": {
            cluster_name(layout): {
                "sites": {s: [str(files.certs / f"{s}.crt")] for s in layout.site_names}
            }
        },
    }
    return "# drorch lab up: the witness of this lab\n" + yaml.safe_dump(data, sort_keys=False)


def full_cluster_yaml(
    layout: LabLayout,
    spec: LabSpec,
    files: LabFiles,
    witness_fingerprint: str,
    *,
    failover: str = "automatic",
    runbook: str | None = None,
) -> str:
    witness = layout.witness
    assert witness is not None
    sites: dict[str, Any] = {}
    for site in layout.sites:
        node = NODES[site.name]
        sites[site.name] = {
            "nodes": [
                {
                    "name": node,
                    "address": "local",
                    "replication_address": site.address,
                    "libvirt_uri": layout.local_uri(site.name),
                    "migration_uri": layout.peer_uri(site.name),
                    "agent_cert": str(files.certs / f"{node}.crt"),
                }
            ]
        }
    volumes, vms = [], []
    for i, vm in enumerate(spec.vm_names):
        volumes.append(
            {
                "name": f"{vm}-disk",
                "driver": "pyrepl",
                "mode": spec.mode,
                "size": spec.disk_size,
                "port": REPL_PORT + i,
                "paths": {n: str(files.disk(vm, n)) for n in NODES.values()},
                "pyrepl": {"nbd_port": NBD_PORT + 2 * i},
            }
        )
        vms.append(
            {
                "name": vm,
                "domain": vm,
                "volumes": [f"{vm}-disk"],
                "migratable": True,
                "memory": "128MiB",
                "monitors": [
                    {
                        "name": f"{vm}-heartbeat",
                        "type": "heartbeat",
                        "target": guest_serial_log(layout, vm),
                        "interval": "10s",
                        "timeout": "8s",  # how long a verify waits for 3 beats
                        "level": 3,
                    }
                ],
            }
        )
    agent: dict[str, Any] = {
        "failover": failover,
        "port": AGENT_PORT,
        "heartbeat": "500ms",
        "member_timeout": "2s",
    }
    if runbook is not None:
        agent["runbook"] = runbook
    target = layout.site_names[1]
    data: dict[str, Any] = {
        "cluster": cluster_name(layout),
        "primary_site": layout.site_names[0],
        "sites": sites,
        "witness": {
            "address": f"{witness.address}:{WITNESS_PORT}",
            "fingerprint": witness_fingerprint,
            "cert": str(files.certs / "{site}.crt"),
            "key": str(files.certs / "{site}.key"),
        },
        "volumes": volumes,
        "vms": vms,
        "agent": agent,
        "fencing": {
            "watchdog": "soft",
            "watchdog_timeout": "3s",
            "margin": "1s",
            "self_fence": "suicide",
        },
        "quorum": {"heartbeat": "1s", "lease_timeout": "6s", "switch_delay": "3s"},
        "migration": {
            "max_downtime": "300ms",
            "downtime_ceiling": "2s",
            "downtime_steps": 4,
            "stall_iterations": 3,
            "auto_converge": True,
            "allow_postcopy": False,
            "deadline": "2m",
        },
        "hypervisor": {"driver": "libvirt", "state_dir": str(files.drorch_state)},
        # the three drill kinds (runbooks/drills/), as a data centre would schedule them;
        # `drorch drill run NAME -c FILE` runs one now
        "drills": [
            {
                "name": "weekly-live",
                "kind": "live",
                "schedule": "0 3 * * sun",
                "target": target,
                "targets": {"rto": "2m", "downtime": "500ms"},
            },
            {
                "name": "monthly-test-recovery",
                "kind": "test-recovery",
                "schedule": "0 2 1 * *",
                "target": target,
            },
            {
                "name": "quarterly-cold",
                "kind": "cold",
                "schedule": "0 4 1 1,4,7,10 *",
                "target": target,
                "targets": {"rto": "2m"},
            },
        ],
    }
    head = (
        f"# The whole two-site lab `{layout.name}`, written by `drorch lab up --vms"
        f" {spec.vms} --mode {spec.mode}`.\n# A normal cluster file: use it with every"
        f" drorch command (-c {files.cluster}).\n"
    )
    return head + yaml.safe_dump(data, sort_keys=False)
