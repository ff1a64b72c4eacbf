"""Config loading and planning on a large cluster.

`drorch config validate`, `status` and every plan load the whole file, and an agent
reloads it on SIGHUP, so a big cluster must still load well under a second. Figures, each
next to its target, with the ratio to a peer measured in the same run:

- load + validate a cluster of 300 VMs, 300 services and 100 volumes (median of 5):
  target <= 1.0 s, >= 5 MB/s, and <= 3x plain libyaml loading (`yaml.load` with
  CSafeLoader) of the same text, the floor of reading YAML at all.
- linear: a file 10x as large (3,000 services more) takes at most 10x x 1.5 as long.
- plan_migration on that cluster (median of 20): target <= 50 ms.
- dump + reload round trip (median of 5): target <= 2.0 s.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import yaml

from drorch.decide.plan import plan_migration
from drorch.decide.snapshot import ReplicaView, Snapshot
from drorch.model.dump import cluster_to_yaml
from drorch.model.loader import parse_cluster_text

VMS, SERVICES, VOLUMES = 300, 300, 100
TARGET_LOAD_S = 1.0
TARGET_MBPS = 5.0
TARGET_LIBYAML_RATIO = 3.0
TARGET_LINEAR = 1.5  # 10x the text may take at most 1.5 x 10x the time
TARGET_PLAN_MS = 50.0
TARGET_ROUNDTRIP_S = 2.0


def big_config(extra_services: int = 0) -> str:
    out = [
        "cluster: big\nprimary_site: A\nsites:\n",
        "  A: {nodes: [{name: a1}, {name: a2}]}\n  B: {nodes: [{name: b1}, {name: b2}]}\n",
        "volumes:\n",
    ]
    for i in range(VOLUMES):
        a, b = ("a1", "b1") if i % 2 else ("a2", "b2")
        out.append(
            f"  - {{name: vol{i}, driver: pyrepl, mode: sync, size: 1GiB, port: {7000 + 2 * i},"
            f" paths: {{{a}: /srv/v{i}.img, {b}: /srv/v{i}.img}}}}\n"
        )
    out.append("vms:\n")
    for i in range(VMS):
        mig = "true" if i % 3 else "false"
        dep = f", depends_on: [vm{i - 3}]" if i >= 3 and i % 3 == 0 else ""
        out.append(
            f"  - {{name: vm{i}, volumes: [vol{i % VOLUMES}], migratable: {mig}{dep},"
            " monitors: [{name: alive, type: process, target: qemu, interval: 10s,"
            " timeout: 2s}]}\n"
        )
    out.append("services:\n")
    for i in range(SERVICES + extra_services):
        out.append(
            f"  - {{name: svc{i}, start: 'true', stop: 'true', depends_on: [vm{i % VMS}],"
            " monitors: [{name: port, type: tcp, target: '127.0.0.1:80', interval: 10s,"
            " timeout: 2s, level: 2}]}\n"
        )
    out.append("quorum: {heartbeat: 1s, lease_timeout: 10s, switch_delay: 5s}\n")
    return "".join(out)


def median(fn: Callable[[], object], rounds: int) -> float:
    """Median CPU seconds of this thread (the machine is shared: wall time measures the
    neighbours as much as the code)."""
    times = []
    for _ in range(rounds):
        started = time.thread_time()
        fn()
        times.append(time.thread_time() - started)
    return statistics.median(times)


def main() -> int:
    text = big_config()
    cluster, _ = parse_cluster_text(text, "big.yaml")
    load_s = median(lambda: parse_cluster_text(text, "big.yaml"), 7)
    peer_s = median(lambda: yaml.load(text, Loader=yaml.CSafeLoader), 7)
    mbps = len(text.encode()) / load_s / 1e6
    big = big_config(extra_services=10 * (VMS + SERVICES + VOLUMES))
    big_s = median(lambda: parse_cluster_text(big, "bigger.yaml"), 3)
    big_peer_s = median(lambda: yaml.load(big, Loader=yaml.CSafeLoader), 3)
    growth = (big_s / load_s) / (len(big) / len(text))
    replicas = {}
    for vol in cluster.volumes:
        for node, site in zip(vol.paths, ("A", "B"), strict=True):
            role = "primary" if site == "A" else "secondary"
            replicas[(vol.name, site)] = ReplicaView(
                vol.name, node, site, role, "UpToDate", "Connected"
            )
    snapshot = Snapshot(cluster, replicas=replicas,
                        vm_states={(vm.domain, "A"): "running" for vm in cluster.vms})  # fmt: skip
    plan = plan_migration(snapshot, "B")
    assert plan.runnable and len(plan.steps) > VMS
    plan_s = median(lambda: plan_migration(snapshot, "B"), 20)
    rt_s = median(lambda: parse_cluster_text(cluster_to_yaml(cluster), "rt.yaml"), 5)
    ok = (
        load_s <= TARGET_LOAD_S
        and mbps >= TARGET_MBPS
        and load_s / peer_s <= TARGET_LIBYAML_RATIO
        and growth <= TARGET_LINEAR
        and plan_s * 1000 <= TARGET_PLAN_MS
        and rt_s <= TARGET_ROUNDTRIP_S
    )
    print(f"config size                    {len(text) / 1024:.0f} KiB, {VMS} VMs,"
          f" {SERVICES} services, {VOLUMES} volumes")  # fmt: skip
    print(f"load+validate (median of 7)    {load_s:.3f} s   target <= {TARGET_LOAD_S} s")
    print(f"  throughput                   {mbps:.2f} MB/s   target >= {TARGET_MBPS} MB/s"
          f"   (libyaml CSafeLoader load alone: {len(text) / peer_s / 1e6:.2f} MB/s)")  # fmt: skip
    print(f"  vs libyaml load              {load_s / peer_s:.2f}x ({peer_s:.3f} s)"
          f"   target <= {TARGET_LIBYAML_RATIO}x")  # fmt: skip
    print(f"  10x file ({len(big) / 1024:.0f} KiB)           {big_s:.3f} s: {growth:.2f}x per byte"
          f"   target <= {TARGET_LINEAR}x (libyaml {big_peer_s:.3f} s,"
          f" {big_s / big_peer_s:.2f}x)")  # fmt: skip
    print(f"plan_migration (median of 20)  {plan_s * 1000:.1f} ms  target <= {TARGET_PLAN_MS} ms"
          f"   ({len(plan.steps)} steps)")  # fmt: skip
    print(f"dump+reload (median of 5)      {rt_s:.3f} s   target <= {TARGET_ROUNDTRIP_S} s")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
