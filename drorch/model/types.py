"""The cluster model: frozen dataclasses, loaded from one YAML file (see loader.py).

All durations are seconds (float) and all sizes are bytes (int) once loaded. Names are
unique across volumes, VMs and services, so a dependency is just a name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


def _frozen_map() -> Mapping[str, str]:
    return MappingProxyType({})


class Driver(StrEnum):
    DRBD = "drbd"
    PYREPL = "pyrepl"


class ReplicationMode(StrEnum):
    SYNC = "sync"
    ASYNC = "async"


class WatchdogKind(StrEnum):
    DEVICE = "device"
    SOFT = "soft"
    NONE = "none"


class FailoverMode(StrEnum):
    AUTOMATIC = "automatic"  # the surviving site's agent takes over on its own
    MANUAL = "manual"  # it reports "ready to take over" and waits for `drorch failover`


class SelfFence(StrEnum):
    SUICIDE = "suicide"
    SHUTDOWN = "shutdown"


class MonitorType(StrEnum):
    PROCESS = "process"
    TCP = "tcp"
    HTTP = "http"
    COMMAND = "command"
    HEARTBEAT = "heartbeat"


class DrillKind(StrEnum):
    LIVE_ROUNDTRIP = "live-roundtrip"  # weekly: live-migrate over and back
    COLD_FAILOVER = "cold-failover"  # quarterly: prove the DR site boots


@dataclass(frozen=True)
class Node:
    """A machine at a site. `address` is `local` or an ssh target `user@host:port`.

    `libvirt_uri` is how drorch reaches this node's libvirtd; `migration_uri` is how the
    other site's libvirtd reaches it for peer-to-peer live migration (default: derived
    from a network `libvirt_uri`, e.g. qemu+tls://host/system)."""

    name: str
    address: str = "local"
    libvirt_uri: str | None = None
    # Where block replication (DRBD) listens on this node, when not the ssh host
    # (e.g. a dedicated replication network). None: derived, see replication/drbd/render.py.
    replication_address: str | None = None
    migration_uri: str | None = None
    # This node's agent certificate (public; every node keeps a copy of every node's): the
    # only trust anchor for its membership connections (mutual TLS, pinned).
    agent_cert: str | None = None

    @property
    def is_local(self) -> bool:
        return self.address == "local"


@dataclass(frozen=True)
class Site:
    name: str
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Witness:
    """The external quorum daemon: `host:port` and the pinned server certificate.

    `cert` and `key` are this site's client certificate files (paths on each node)."""

    address: str
    fingerprint: str
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class DrbdOptions:
    """DRBD 9 `net`/policy options rendered into the resource file."""

    device: str = "/dev/drbd0"
    ping_timeout: float = 0.5
    timeout: float = 6.0
    ko_count: int = 7
    verify_alg: str = "sha256"
    csums_alg: str = "sha256"
    on_congestion: str = "block"  # block | pull-ahead | disconnect
    after_sb_0pri: str = "disconnect"
    after_sb_1pri: str = "disconnect"
    after_sb_2pri: str = "disconnect"
    quorum: str = "off"  # off | majority
    on_no_quorum: str = "suspend-io"  # suspend-io | io-error


@dataclass(frozen=True)
class PyreplOptions:
    """Options of drorch's own replicator."""

    region_size: int = 64 * 1024
    max_lag_bytes: int = 64 * 1024 * 1024
    on_congestion: str = "block"  # block | pull-ahead
    nbd_port: int | None = None
    tls: bool = False


@dataclass(frozen=True)
class Volume:
    """A replicated block volume. `paths` maps node name -> backing device or file."""

    name: str
    driver: Driver
    mode: ReplicationMode
    size: int
    port: int
    paths: Mapping[str, str] = field(default_factory=_frozen_map)
    drbd: DrbdOptions = field(default_factory=DrbdOptions)
    pyrepl: PyreplOptions = field(default_factory=PyreplOptions)


@dataclass(frozen=True)
class Monitor:
    """One check of a service or VM.

    level 1: is the process alive; level 2: does its API answer sanely;
    level 3: is it still heartbeating. `target` is type-specific: a process name,
    `host:port`, a URL, a command line, or a heartbeat file/serial log."""

    name: str
    type: MonitorType
    target: str
    interval: float = 10.0
    timeout: float = 5.0
    level: int = 1
    expect: str | None = None


@dataclass(frozen=True)
class VM:
    """A libvirt domain. Not migratable -> stopped at one site and started at the other."""

    name: str
    domain: str
    xml: str | None = None
    volumes: tuple[str, ...] = ()
    migratable: bool = True
    depends_on: tuple[str, ...] = ()
    monitors: tuple[Monitor, ...] = ()
    memory_mib: int = 128
    dirty_rate_mibps: float = 8.0  # simulated hypervisor: guest page-dirtying rate


@dataclass(frozen=True)
class Service:
    """A service started/stopped by commands on a node of the active site.

    `placement` maps site name -> node name (default: the site's first node)."""

    name: str
    start: str
    stop: str
    migratable: bool = False
    depends_on: tuple[str, ...] = ()
    monitors: tuple[Monitor, ...] = ()
    placement: Mapping[str, str] = field(default_factory=_frozen_map)


@dataclass(frozen=True)
class Fencing:
    watchdog: WatchdogKind = WatchdogKind.SOFT
    device: str = "/dev/watchdog"
    watchdog_timeout: float = 5.0
    self_fence: SelfFence = SelfFence.SUICIDE
    margin: float = 1.0


@dataclass(frozen=True)
class AgentSettings:
    """The per-node agent: membership heartbeats between the sites' agents (mutual TLS,
    pinned certificates), and whether a lost site is taken over automatically."""

    failover: FailoverMode = FailoverMode.MANUAL
    port: int = 7445
    heartbeat: float = 1.0
    member_timeout: float = 3.0
    key: str | None = None  # this node's agent private key (its cert is its node's agent_cert)


@dataclass(frozen=True)
class QuorumTimings:
    """`takeover_wait` is derived as lease_timeout + switch_delay when not written."""

    heartbeat: float = 1.0
    lease_timeout: float = 10.0
    switch_delay: float = 5.0
    takeover_wait: float = 15.0


@dataclass(frozen=True)
class MigrationPolicy:
    """Live-migration convergence policy (see virt/)."""

    max_downtime: float = 0.3
    downtime_ceiling: float = 2.0
    downtime_steps: int = 4
    stall_iterations: int = 3
    auto_converge: bool = True
    allow_postcopy: bool = False
    bandwidth_mibps: int = 0  # 0 = unlimited
    deadline: float = 600.0


@dataclass(frozen=True)
class Drill:
    name: str
    kind: DrillKind
    schedule: str  # cron expression, 5 fields
    target: str  # site to fail over / migrate to


@dataclass(frozen=True)
class Hypervisors:
    """Which hypervisor driver to use (`libvirt` or `sim`) and where `sim` keeps state.
    The default is the real one: a simulation is only ever what the file asks for."""

    driver: str = "libvirt"
    state_dir: str = ".drorch-state"
    bandwidth_mibps: float = 1000.0  # sim: link bandwidth used by pre-copy


@dataclass(frozen=True)
class Cluster:
    name: str
    sites: tuple[Site, Site]
    primary_site: str
    witness: Witness | None = None
    volumes: tuple[Volume, ...] = ()
    vms: tuple[VM, ...] = ()
    services: tuple[Service, ...] = ()
    fencing: Fencing = field(default_factory=Fencing)
    agent: AgentSettings = field(default_factory=AgentSettings)
    quorum: QuorumTimings = field(default_factory=QuorumTimings)
    migration: MigrationPolicy = field(default_factory=MigrationPolicy)
    hypervisor: Hypervisors = field(default_factory=Hypervisors)
    distance_km: float | None = None
    write_latency_budget: float = 0.001
    drills: tuple[Drill, ...] = ()

    def site(self, name: str) -> Site:
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(name)

    def other_site(self, name: str) -> Site:
        self.site(name)
        return self.sites[1] if self.sites[0].name == name else self.sites[0]

    def node(self, name: str) -> tuple[Site, Node]:
        for s in self.sites:
            for n in s.nodes:
                if n.name == name:
                    return s, n
        raise KeyError(name)

    def volume(self, name: str) -> Volume:
        for v in self.volumes:
            if v.name == name:
                return v
        raise KeyError(name)
