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
    DOMAIN = "domain"  # level 1 for a guest: the hypervisor runs the domain here


class DrillKind(StrEnum):
    """Each kind is a shipped runbook, runbooks/drills/KIND.yaml."""

    LIVE = "live"  # weekly: live-migrate over and back, no outage
    COLD = "cold"  # quarterly: shut down, promote, boot at the DR site, fail back
    TEST_RECOVERY = "test-recovery"  # boot copies of the replica on an isolated network


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
class FenceAgent:
    """How the other site powers this site off and confirms it (ClusterLabs fence-agents:
    `fence_virsh`, `fence_ipmilan`, `fence_redfish`). `options` are the agent's stdin
    options (`ip`, `username`, `identity_file`, `plug`, ...); `timeout` bounds the whole
    fence (off and status). Optional: without one the survivor always waits takeover_wait."""

    agent: str
    options: Mapping[str, str] = field(default_factory=_frozen_map)
    timeout: float = 20.0


@dataclass(frozen=True)
class Site:
    """`networks` maps a network's meaning (`lan`, `storage`) to this site's libvirt
    network or bridge of that meaning: the other site's domain XML is mapped through it."""

    name: str
    nodes: tuple[Node, ...]
    fence: FenceAgent | None = None
    networks: Mapping[str, str] = field(default_factory=_frozen_map)


@dataclass(frozen=True)
class Witness:
    """The external quorum daemon: `host:port` and the pinned server certificate.

    `cert` and `key` are this site's client certificate files (paths on each node). A
    `{site}` in either is replaced by the site's name (`certs/c1-{site}.crt`), so one
    file serves a lab whose sites share a machine, or a fleet that names files by site."""

    address: str
    fingerprint: str
    cert: str | None = None
    key: str | None = None

    def cert_for(self, site: str) -> str | None:
        return None if self.cert is None else self.cert.replace("{site}", site)

    def key_for(self, site: str) -> str | None:
        return None if self.key is None else self.key.replace("{site}", site)


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
    # DRBD's names: resource-only (sync default) freezes a primary that loses its peer
    # until the peer is recorded Outdated; dont-care (async) acknowledges alone
    fencing: str = "resource-only"


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
    # The runbook an automatic takeover runs (relative to the config file's folder, then
    # the current directory, then drorch's own runbooks/), and the one that moves a group
    # whose monitors keep failing after max_restarts restarts within failure_window.
    runbook: str = "runbooks/site-failover.yaml"
    escalate_runbook: str = "runbooks/hurricane-planned-migration.yaml"
    # what starts a cluster that runs nowhere once both sites are back (drorch.decide.start)
    start_runbook: str = "runbooks/cluster-start.yaml"
    max_restarts: int = 2
    failure_window: float = 600.0


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
class DrillTargets:
    """What a drill must achieve; None = no target (the trend still flags regressions
    against the drill's own median)."""

    rto: float | None = None  # seconds, run start -> last VM verified at the target
    downtime: float | None = None  # seconds, the worst VM's downtime


@dataclass(frozen=True)
class Drill:
    """A scheduled drill. It starts at the cron time (in `tz`) plus a deterministic
    per-cluster offset inside `window`, and may start late (site busy, scheduler down)
    only until `starting_deadline` after that."""

    name: str
    kind: DrillKind
    schedule: str  # cron expression, 5 fields (or @weekly-style macro)
    target: str  # site to fail over / migrate to
    tz: str = "UTC"
    window: float = 0.0  # seconds of jitter spread; 0 = start on the minute
    starting_deadline: float = 3600.0
    targets: DrillTargets = field(default_factory=DrillTargets)


@dataclass(frozen=True)
class Hypervisors:
    """Which hypervisor driver to use (`libvirt` or `sim`) and where `sim` keeps state.
    The default is the real one: a simulation is only ever what the file asks for."""

    driver: str = "libvirt"
    state_dir: str = ".drorch-state"
    bandwidth_mibps: float = 1000.0  # sim: link bandwidth used by pre-copy
    # sim only: `sim` simulates the volumes too; `real` runs each volume's own driver
    # (real pyrepl daemons under simulated VMs, as `make demo` does)
    replication: str = "sim"

    @property
    def simulates_replication(self) -> bool:
        return self.driver == "sim" and self.replication == "sim"


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
