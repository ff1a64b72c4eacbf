"""A small cluster and snapshot builders for the plan tables."""

from __future__ import annotations

from drorch.decide.snapshot import ReplicaView, Snapshot
from drorch.model.loader import parse_cluster_text
from drorch.model.types import Cluster

CLUSTER_YAML = """\
cluster: shop
primary_site: A
sites:
  A: {nodes: [{name: a1}, {name: a2}]}
  B: {nodes: [{name: b1}]}
volumes:
  - {name: dbdata, driver: pyrepl, mode: sync, size: 1GiB, port: 7789, paths: {a1: /d, b1: /d}}
  - {name: webdata, driver: drbd, mode: async, size: 1GiB, port: 7790, paths: {a2: /w, b1: /w}}
vms:
  - name: db
    domain: db-vm
    volumes: [dbdata]
    migratable: false
  - name: web
    volumes: [webdata]
    migratable: true
    monitors:
      - {name: alive, type: process, target: qemu, interval: 10s, timeout: 2s}
services:
  - name: proxy
    start: "true"
    stop: "true"
    depends_on: [db]
    placement: {A: a2}
    monitors:
      - {name: port, type: tcp, target: "127.0.0.1:6432", interval: 10s, timeout: 3s, level: 2}
  - name: frontend
    start: "true"
    stop: "true"
    depends_on: [web, proxy]
quorum: {heartbeat: 1s, lease_timeout: 10s, switch_delay: 5s}
"""


def cluster() -> Cluster:
    return parse_cluster_text(CLUSTER_YAML, "shop.yaml")[0]


NODES = {
    ("dbdata", "A"): "a1",
    ("dbdata", "B"): "b1",
    ("webdata", "A"): "a2",
    ("webdata", "B"): "b1",
}


def replica(volume: str, site: str, role: str, disk: str = "UpToDate", conn: str = "Connected",
            behind: int = 0, epoch: int = 4) -> ReplicaView:  # fmt: skip
    return ReplicaView(volume, NODES[(volume, site)], site, role, disk, conn, behind, 0, epoch)


def healthy_at_a(**overrides: object) -> Snapshot:
    """Everything runs at A, both volumes connected and in sync, quorum epoch 4."""
    fields: dict[str, object] = {
        "cluster": cluster(),
        "replicas": {
            ("dbdata", "A"): replica("dbdata", "A", "primary"),
            ("dbdata", "B"): replica("dbdata", "B", "secondary"),
            ("webdata", "A"): replica("webdata", "A", "primary"),
            ("webdata", "B"): replica("webdata", "B", "secondary"),
        },
        "vm_states": {
            ("db-vm", "A"): "running",
            ("web", "A"): "running",
            ("db-vm", "B"): "undefined",
            ("web", "B"): "undefined",
        },
        "reachable": {"A": True, "B": True},
        "epoch": 4,
    }
    fields.update(overrides)
    return Snapshot(**fields)  # type: ignore[arg-type]
