"""The normalised config: a `Cluster` as plain data in the config file's own schema.

`cluster_to_dict()` is what `drorch config show --format yaml|json` prints; feeding that
YAML back to the loader gives an equal `Cluster`. Every default is written out, durations
and sizes in human units where that is exact.
"""

from __future__ import annotations

from typing import Any

import yaml

from drorch.model.types import VM, Cluster, Drill, Monitor, Node, Service, Site, Volume
from drorch.model.units import format_duration, format_size, parse_duration


def duration(seconds: float) -> str | float:
    """`500ms`, `10s`, `2m` when that reads back exactly; the plain number otherwise."""
    text = format_duration(seconds)
    return text if parse_duration(text) == seconds else seconds


def size(nbytes: int) -> str | int:
    return format_size(nbytes) if nbytes >= 1024 else nbytes


def _drill(d: Drill) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": d.name, "kind": d.kind.value, "schedule": d.schedule, "target": d.target,
        "tz": d.tz, "window": duration(d.window),
        "starting_deadline": duration(d.starting_deadline),
    }  # fmt: skip
    targets = {k: duration(v) for k, v in (("rto", d.targets.rto),
               ("downtime", d.targets.downtime)) if v is not None}  # fmt: skip
    if targets:
        out["targets"] = targets
    return out


def _monitor(m: Monitor) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": m.name,
        "type": m.type.value,
        "target": m.target,
        "interval": duration(m.interval),
        "timeout": duration(m.timeout),
        "level": m.level,
    }
    if m.expect is not None:
        out["expect"] = m.expect
    return out


def _node(n: Node) -> dict[str, Any]:
    out: dict[str, Any] = {"name": n.name, "address": n.address}
    optional = (
        ("libvirt_uri", n.libvirt_uri),
        ("replication_address", n.replication_address),
        ("migration_uri", n.migration_uri),
        ("agent_cert", n.agent_cert),
    )
    out.update({key: value for key, value in optional if value is not None})
    return out


def _site(s: Site) -> dict[str, Any]:
    out: dict[str, Any] = {"nodes": [_node(n) for n in s.nodes]}
    if s.networks:
        out["networks"] = dict(s.networks)
    if s.fence is not None:
        out["fence"] = {
            "agent": s.fence.agent,
            "options": dict(s.fence.options),
            "timeout": duration(s.fence.timeout),
        }
    return out


def _volume(v: Volume) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": v.name,
        "driver": v.driver.value,
        "mode": v.mode.value,
        "size": size(v.size),
        "port": v.port,
        "paths": dict(v.paths),
        "fencing": v.fencing,
    }
    if v.driver.value == "drbd":
        d = v.drbd
        out["drbd"] = {
            "device": d.device,
            "ping_timeout": duration(d.ping_timeout),
            "timeout": duration(d.timeout),
            "ko_count": d.ko_count,
            "verify_alg": d.verify_alg,
            "csums_alg": d.csums_alg,
            "on_congestion": d.on_congestion,
            "after_sb_0pri": d.after_sb_0pri,
            "after_sb_1pri": d.after_sb_1pri,
            "after_sb_2pri": d.after_sb_2pri,
            "quorum": d.quorum,
            "on_no_quorum": d.on_no_quorum,
        }
    else:
        p = v.pyrepl
        out["pyrepl"] = {
            "region_size": size(p.region_size),
            "max_lag": size(p.max_lag_bytes),
            "on_congestion": p.on_congestion,
            "tls": p.tls,
        }
        if p.nbd_port is not None:
            out["pyrepl"]["nbd_port"] = p.nbd_port
    return out


def _vm(vm: VM) -> dict[str, Any]:
    out: dict[str, Any] = {"name": vm.name, "domain": vm.domain}
    if vm.xml is not None:
        out["xml"] = vm.xml
    out.update(
        volumes=list(vm.volumes),
        migratable=vm.migratable,
        depends_on=list(vm.depends_on),
        memory=size(vm.memory_mib * 2**20),
        dirty_rate_mibps=vm.dirty_rate_mibps,
        monitors=[_monitor(m) for m in vm.monitors],
    )
    return out


def _service(s: Service) -> dict[str, Any]:
    return {
        "name": s.name,
        "start": s.start,
        "stop": s.stop,
        "migratable": s.migratable,
        "depends_on": list(s.depends_on),
        "placement": dict(s.placement),
        "monitors": [_monitor(m) for m in s.monitors],
    }


def cluster_to_dict(c: Cluster) -> dict[str, Any]:
    out: dict[str, Any] = {
        "cluster": c.name,
        "primary_site": c.primary_site,
        "sites": {s.name: _site(s) for s in c.sites},
    }
    if c.distance_km is not None:
        out["distance_km"] = c.distance_km
    out["write_latency_budget"] = duration(c.write_latency_budget)
    if c.witness is not None:
        w = c.witness
        out["witness"] = {"address": w.address, "fingerprint": w.fingerprint}
        out["witness"].update({k: v for k, v in (("cert", w.cert), ("key", w.key)) if v})
    out["volumes"] = [_volume(v) for v in c.volumes]
    out["vms"] = [_vm(vm) for vm in c.vms]
    out["services"] = [_service(s) for s in c.services]
    f, q, m, h = c.fencing, c.quorum, c.migration, c.hypervisor
    out["fencing"] = {
        "watchdog": f.watchdog.value,
        "device": f.device,
        "watchdog_timeout": duration(f.watchdog_timeout),
        "margin": duration(f.margin),
        "self_fence": f.self_fence.value,
    }
    a = c.agent
    out["agent"] = {
        "failover": a.failover.value,
        "port": a.port,
        "heartbeat": duration(a.heartbeat),
        "member_timeout": duration(a.member_timeout),
        "runbook": a.runbook,
        "escalate_runbook": a.escalate_runbook,
        "start_runbook": a.start_runbook,
        "max_restarts": a.max_restarts,
        "failure_window": duration(a.failure_window),
    }
    out["agent"].update({k: v for k, v in (("key", a.key),) if v})
    out["quorum"] = {
        "heartbeat": duration(q.heartbeat),
        "lease_timeout": duration(q.lease_timeout),
        "switch_delay": duration(q.switch_delay),
        "takeover_wait": duration(q.takeover_wait),
    }
    out["migration"] = {
        "max_downtime": duration(m.max_downtime),
        "downtime_ceiling": duration(m.downtime_ceiling),
        "downtime_steps": m.downtime_steps,
        "stall_iterations": m.stall_iterations,
        "auto_converge": m.auto_converge,
        "allow_postcopy": m.allow_postcopy,
        "bandwidth_mibps": m.bandwidth_mibps,
        "deadline": duration(m.deadline),
    }
    out["hypervisor"] = {
        "driver": h.driver,
        "state_dir": h.state_dir,
        "bandwidth_mibps": h.bandwidth_mibps,
        "replication": h.replication,
    }
    out["drills"] = [_drill(d) for d in c.drills]
    return out


# libyaml's emitter when available: the same YAML, several times faster.
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def cluster_to_yaml(c: Cluster) -> str:
    text: str = yaml.dump(
        cluster_to_dict(c),
        Dumper=_DUMPER,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )
    return text
