"""Every model field is readable from YAML and written back by dump.

When a field is added to drorch/model/types.py, this fails until the loader (schema*.py)
and dump.py know it: otherwise a config key would be refused or silently dropped."""

from __future__ import annotations

import dataclasses

import pytest

from drorch.model import types
from drorch.model.dump import cluster_to_yaml
from drorch.model.loader import parse_cluster_text

# model field -> YAML key, where they differ
RENAMED = {("PyreplOptions", "max_lag_bytes"): "max_lag", ("VM", "memory_mib"): "memory"}
# fields that are not a key of their own mapping (the mapping key or structure carries them)
STRUCTURAL = {("Site", "name"), ("Site", "nodes")}

MODELS = [
    types.Node, types.FenceAgent, types.Site, types.Witness, types.DrbdOptions, types.PyreplOptions,
    types.Volume, types.Monitor, types.VM, types.Service, types.Fencing, types.AgentSettings,
    types.QuorumTimings, types.MigrationPolicy, types.DrillTargets, types.Drill, types.Hypervisors,
    types.Cluster,
]  # fmt: skip

FULL = """\
cluster: full
primary_site: A
sites:
  A:
    nodes:
      - {name: a1, address: local, libvirt_uri: "qemu:///system",
         replication_address: 10.0.0.1, migration_uri: "qemu+tcp://10.0.0.1/system",
         agent_cert: /agents/a1.pem}
    networks: {lan: br-a}
  B:
    nodes: [{name: b1, address: "root@10.0.0.2:22"}]
    networks: {lan: br-b}
    fence: {agent: fence_ipmilan, options: {ip: 10.0.9.2, username: admin}, timeout: 9s}
distance_km: 10
write_latency_budget: 2ms
witness: {address: "127.0.0.1:7443", fingerprint: "FINGERPRINT", cert: /c.pem, key: /c.key}
volumes:
  - {name: d, driver: drbd, mode: async, size: 1GiB, port: 7789, paths: {a1: /d, b1: /d},
     drbd: {device: /dev/drbd3, ping_timeout: 1s, timeout: 7s, ko_count: 3, verify_alg: md5,
            csums_alg: md5, on_congestion: pull-ahead, after_sb_0pri: discard-zero-changes,
            after_sb_1pri: consensus, after_sb_2pri: call-pri-lost-after-sb, quorum: majority,
            on_no_quorum: io-error}}
  - {name: p, driver: pyrepl, mode: sync, size: 2GiB, port: 7790, paths: {a1: /p, b1: /p},
     pyrepl: {region_size: 128KiB, max_lag: 1GiB, on_congestion: block, nbd_port: 10809,
              tls: true}}
vms:
  - {name: v, domain: vdom, xml: /v.xml, volumes: [d], migratable: true, depends_on: [],
     memory: 512MiB, dirty_rate_mibps: 20,
     monitors: [{name: m, type: http, target: "http://x/", interval: 7s, timeout: 3s,
                 level: 2, expect: ok}]}
services:
  - {name: s, start: "true", stop: "false", migratable: true, depends_on: [v],
     placement: {A: a1}, monitors: []}
fencing: {watchdog: device, device: /dev/watchdog1, watchdog_timeout: 4s, margin: 2s,
          self_fence: shutdown}
agent: {failover: automatic, port: 7446, heartbeat: 500ms, member_timeout: 2s,
        key: /a.key, runbook: /rb/failover.yaml, escalate_runbook: /rb/move.yaml,
        start_runbook: /rb/start.yaml, max_restarts: 4, failure_window: 5m}
quorum: {heartbeat: 2s, lease_timeout: 12s, switch_delay: 3s, takeover_wait: 20s}
migration: {max_downtime: 100ms, downtime_ceiling: 1s, downtime_steps: 2, stall_iterations: 5,
            auto_converge: false, allow_postcopy: true, bandwidth_mibps: 100, deadline: 5m}
hypervisor: {driver: libvirt, state_dir: /var/lib/drorch, bandwidth_mibps: 10, replication: real}
drills: [{name: w, kind: live, schedule: "@weekly", target: B, tz: Europe/Berlin, window: 30m,
          starting_deadline: 2h, targets: {rto: 5m, downtime: 500ms}}]
""".replace("FINGERPRINT", "ab" * 32)


def yaml_key(model: type, field: str) -> str:
    return RENAMED.get((model.__name__, field), field)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_appears_in_the_full_example(model: type) -> None:
    missing = [
        f.name
        for f in dataclasses.fields(model)
        if (model.__name__, f.name) not in STRUCTURAL and f"{yaml_key(model, f.name)}:" not in FULL
    ]
    assert missing == [], f"{model.__name__}: add {missing} to the loader, dump and this example"


def test_full_example_loads_with_no_defaults_left_and_round_trips() -> None:
    cluster, _ = parse_cluster_text(FULL, "full.yaml")
    default_fencing = types.Fencing()
    for f in dataclasses.fields(types.Fencing):
        assert getattr(cluster.fencing, f.name) != getattr(default_fencing, f.name), f.name
    assert cluster.site("A").nodes[0].migration_uri == "qemu+tcp://10.0.0.1/system"
    assert cluster.volumes[0].drbd.on_congestion == "pull-ahead"
    assert cluster.volumes[1].pyrepl.max_lag_bytes == 2**30
    assert parse_cluster_text(cluster_to_yaml(cluster), "again.yaml")[0] == cluster
