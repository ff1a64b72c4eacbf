"""The `Replicator` seam: one replicated volume as seen from one node.

Both drivers (DRBD and pyrepl) and the in-memory fake pass the same contract tests
(`drorch.testing.contracts`). States follow DRBD 9's names so an operator reads them the
same way whichever driver is underneath.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# re-exported: the one definition lives in drorch.model.states
from drorch.model.states import ConnState as ConnState
from drorch.model.states import DiskState as DiskState
from drorch.model.states import Role as Role


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ReplicationStatus:
    """What one node knows about one volume. `extra` keeps fields a driver did not map
    (unknown DRBD keys, for example) so nothing observed is thrown away."""

    name: str
    role: Role
    disk: DiskState
    connection: ConnState
    mode: str
    peer_disk: DiskState = DiskState.UNKNOWN
    peer_role: Role = Role.UNKNOWN
    out_of_sync_bytes: int = 0
    lag_bytes: int = 0
    percent_in_sync: float = 100.0
    resync_eta_seconds: float | None = None
    suspended: bool = False
    quorum: bool | None = None
    epoch: int = 0
    generation: Mapping[str, Any] = field(default_factory=_empty)
    nbd: str | None = None
    extra: Mapping[str, Any] = field(default_factory=_empty)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role.value,
            "disk": self.disk.value,
            "peer_disk": self.peer_disk.value,
            "peer_role": self.peer_role.value,
            "connection": self.connection.value,
            "mode": self.mode,
            "out_of_sync_bytes": self.out_of_sync_bytes,
            "lag_bytes": self.lag_bytes,
            "percent_in_sync": self.percent_in_sync,
            "resync_eta_seconds": self.resync_eta_seconds,
            "suspended": self.suspended,
            "quorum": self.quorum,
            "epoch": self.epoch,
            "generation": dict(self.generation),
            "nbd": self.nbd,
            "extra": dict(self.extra),
        }


@dataclass(frozen=True)
class VerifyResult:
    """Regions (byte offsets, region-sized) whose checksums differ between the sites."""

    regions_checked: int
    out_of_sync: tuple[int, ...]
    region_size: int


class ReplicationError(Exception):
    """Base of replication failures; `message` is what the operator needs to read."""


class UnsafeOperation(ReplicationError):
    """Refused because it could lose data (e.g. promoting a disk that is not UpToDate).
    Retrying with force=True and accept_data_loss=True overrides it."""


class SplitBrain(ReplicationError):
    """Both sides changed while apart. Carries both sides' generation ids."""

    def __init__(self, message: str, local: Mapping[str, Any], peer: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.local = dict(local)
        self.peer = dict(peer)


class StaleEpoch(ReplicationError):
    """A primary's fencing epoch is older than one this side has already seen."""


class Replicator(ABC):
    """One volume on one node. Every method is synchronous: it returns when the state
    change is complete (or raises), so callers can observe the new state with status()."""

    name: str

    @abstractmethod
    def status(self) -> ReplicationStatus:
        """Observe without changing anything. Never raises for odd states: unknown
        states and fields are reported in `extra`. Raises ReplicationError only when the
        node cannot be asked at all."""

    @abstractmethod
    def up(self) -> None:
        """Attach the backing disk and start connecting to the peer, as secondary.
        Idempotent: up() on a volume that is already up changes nothing."""

    @abstractmethod
    def down(self) -> None:
        """Disconnect and detach. Refused (ReplicationError) while primary. Idempotent."""

    @abstractmethod
    def promote(
        self, epoch: int | None = None, *, force: bool = False, accept_data_loss: bool = False
    ) -> None:
        """Become primary, recording the quorum `epoch` as fencing token.

        Raises UnsafeOperation if the local disk is not UpToDate, unless both `force` and
        `accept_data_loss` are true. Raises ReplicationError if the peer is primary."""

    @abstractmethod
    def demote(self) -> None:
        """Become secondary. Idempotent."""

    @abstractmethod
    def connect(self) -> None:
        """(Re)connect to the peer; resync starts if needed. Raises SplitBrain when the
        histories diverged (the volume stays StandAlone)."""

    @abstractmethod
    def disconnect(self) -> None:
        """Go StandAlone on purpose. Idempotent."""

    @abstractmethod
    def verify(self) -> VerifyResult:
        """Compare checksums region by region with the peer (needs a connection)."""

    @abstractmethod
    def resolve_discard_local(self) -> None:
        """Resolve split brain by discarding this side's changes: it becomes a sync
        target of the peer. Refused while primary."""
