"""The frozen picture decisions are made from: the model plus what was observed.

Built by `drorch.observe` (which does the I/O); tests build them directly. States are
strings with DRBD's and libvirt's spelling ("UpToDate", "Connected", "running"); the names
are the StrEnums of `drorch.model.states`, which compare equal to those strings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from drorch.model.states import Role, VMState, in_sync
from drorch.model.types import Cluster, Volume


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ReplicaView:
    """One replica of a volume as its node sees it."""

    volume: str
    node: str
    site: str
    role: str  # primary | secondary | unknown
    disk: str  # UpToDate | Outdated | Inconsistent | Consistent | Diskless | DUnknown
    connection: str  # Connected | Connecting | StandAlone | SyncSource | SyncTarget
    out_of_sync_bytes: int = 0
    lag_bytes: int = 0
    epoch: int = 0
    mode: str = ""  # sync | async as the replica runs now ("" unknown: the model's)
    # writes only this replica has (a primary not shipping), and since when (ISO time)
    unshipped_writes: int = 0
    unshipped_first: str = ""
    # the writes this replica discarded when it was last resynced from its peer (after a
    # failover: what it cost), when (epoch seconds) and the window they were written in
    discarded_writes: int = 0
    discarded_at: float | None = None
    discarded_window: str = ""
    # why discarded_writes may be below the writes really lost ("" : it is not)
    discarded_uncounted: str = ""

    @property
    def in_sync(self) -> bool:
        return in_sync(
            self.disk,
            self.connection,
            out_of_sync_bytes=self.out_of_sync_bytes,
            lag_bytes=self.lag_bytes,
        )


@dataclass(frozen=True)
class WitnessView:
    """The witness as one site sees it (a `want:false` vote): who holds the lease, the
    cluster's epoch, whether `site` holds it."""

    site: str
    holder: str | None
    epoch: int
    granted: bool
    lease_ms: int


@dataclass(frozen=True)
class SavedXMLView:
    """A VM's domain XML saved for `site` (drorch/virt/xml_store.py): where, when, from
    which site's definition; `stale` says why it is older than the running definition
    (None: it matches, or the VM runs nowhere to compare with)."""

    vm: str
    site: str
    path: str
    saved_at: float
    from_site: str
    stale: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """`replicas` by (volume, site); `vm_states` by (vm name, site) in libvirt's words;
    `reachable`/`fenced` by site; `epoch` is the highest quorum epoch seen (a new primary
    takes epoch + 1); `unobserved` lists what could not be observed, for the operator.

    The witness: `witness` by asking site; `outdated` by (volume, site) -> the epoch since
    which the witness records that copy as outdated (another site wrote alone);
    `witness_errors` by site, why the witness could not be asked as that site (a site
    missing from both was not asked: no witness, or no client cert configured)."""

    cluster: Cluster
    now: float = 0.0
    replicas: Mapping[tuple[str, str], ReplicaView] = field(default_factory=dict)
    vm_states: Mapping[tuple[str, str], str] = field(default_factory=dict)
    reachable: Mapping[str, bool] = field(default_factory=dict)
    fenced: Mapping[str, bool] = field(default_factory=dict)
    fenced_reason: Mapping[str, str] = field(default_factory=_empty)
    epoch: int = 0
    unobserved: tuple[str, ...] = ()
    witness: Mapping[str, WitnessView] = field(default_factory=dict)
    outdated: Mapping[tuple[str, str], int] = field(default_factory=dict)
    witness_errors: Mapping[str, str] = field(default_factory=dict)
    # by (vm name, site); only judged when observed (a snapshot built without looking
    # at the state directory says nothing about saved XML)
    saved_xml: Mapping[tuple[str, str], SavedXMLView] = field(default_factory=dict)
    saved_xml_observed: bool = False

    def saved_xml_for(self, vm: str, site: str) -> SavedXMLView | None:
        return self.saved_xml.get((vm, site))

    def outdated_since(self, volume: str, site: str) -> int | None:
        """The epoch since which the witness marks `volume` at `site` outdated, or None."""
        return self.outdated.get((volume, site))

    def witness_asked(self, site: str) -> bool:
        return site in self.witness

    def replica(self, volume: str, site: str) -> ReplicaView | None:
        return self.replicas.get((volume, site))

    def vm_state(self, vm: str, site: str) -> str:
        return self.vm_states.get((vm, site), VMState.UNDEFINED)

    def is_reachable(self, site: str) -> bool:
        return self.reachable.get(site, True)


def replica_node(cluster: Cluster, volume: Volume, site: str) -> str | None:
    """The node of `site` that holds a replica of `volume` (validation ensures one)."""
    nodes = {n.name for n in cluster.site(site).nodes}
    for node in volume.paths:
        if node in nodes:
            return node
    return None


def active_site(snapshot: Snapshot) -> tuple[str, str]:
    """Where the cluster runs now, and why: the site holding the primary replicas, else
    the site where most VMs run, else the configured primary site."""
    primaries = Counter(r.site for r in snapshot.replicas.values() if r.role == Role.PRIMARY)
    if primaries:
        site, count = primaries.most_common(1)[0]
        return site, f"{count} volume(s) are primary at {site}"
    running = Counter(s for (_, s), state in snapshot.vm_states.items() if state == VMState.RUNNING)
    if running:
        site, count = running.most_common(1)[0]
        return site, f"no volume is primary; {count} VM(s) run at {site}"
    c = snapshot.cluster
    return c.primary_site, f"nothing observed running; {c.primary_site} is the configured primary"
