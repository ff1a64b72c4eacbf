"""The connect-time decision, pure: are we in sync, who resyncs whom, or split brain?

Both sides exchange a `SideView` and run `decide_sync(local, peer)`; the function is
mirror-symmetric (swap the arguments and SOURCE becomes TARGET), so both reach the same
verdict without a further round trip. The rules follow DRBD's UUID comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from drorch.replication.base import DiskState, Role
from drorch.replication.pyrepl.meta import NO_GENERATION, Generation


@dataclass(frozen=True)
class SideView:
    name: str
    node_id: str
    size: int
    region_size: int
    role: Role
    disk: DiskState
    generation: Generation
    epoch: int
    discard_local: bool = False
    dirty_regions: int = 0
    mode: str = ""  # sync | async; "" from a peer too old to say
    mode_serial: int = 0  # how many live switches (modeswitch.py); 0: as configured

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "node_id": self.node_id,
            "size": self.size,
            "region_size": self.region_size,
            "role": self.role.value,
            "disk": self.disk.value,
            "generation": self.generation.as_dict(),
            "epoch": self.epoch,
            "discard_local": self.discard_local,
            "dirty_regions": self.dirty_regions,
            "mode": self.mode,
            "mode_serial": self.mode_serial,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SideView:
        return cls(
            name=str(data["name"]),
            node_id=str(data["node_id"]),
            size=int(data["size"]),
            region_size=int(data["region_size"]),
            role=Role(data["role"]),
            disk=DiskState(data["disk"]),
            generation=Generation.from_dict(data["generation"]),
            epoch=int(data["epoch"]),
            discard_local=bool(data.get("discard_local", False)),
            dirty_regions=int(data.get("dirty_regions", 0)),
            mode=str(data.get("mode", "")),
            mode_serial=int(data.get("mode_serial", 0)),
        )


class Action(StrEnum):
    IN_SYNC = "in-sync"
    NO_DATA = "no-data"  # connect, but neither side has data yet (day 0)
    SOURCE = "sync-source"  # local resyncs the peer
    TARGET = "sync-target"  # the peer resyncs local
    SPLIT_BRAIN = "split-brain"
    STALE_EPOCH = "stale-epoch"
    REFUSE = "refuse"


MIRROR = {Action.SOURCE: Action.TARGET, Action.TARGET: Action.SOURCE}


@dataclass(frozen=True)
class SyncDecision:
    action: Action
    reason: str
    full: bool = False  # resync every region, not just the dirty ones

    @property
    def connects(self) -> bool:
        return self.action in (Action.IN_SYNC, Action.NO_DATA, Action.SOURCE, Action.TARGET)


_GOOD = (DiskState.UP_TO_DATE, DiskState.OUTDATED, DiskState.CONSISTENT)


def decide_sync(local: SideView, peer: SideView) -> SyncDecision:
    """What to do when `local` meets `peer`. Pure; the reason names the evidence."""
    if (local.name, local.size, local.region_size) != (peer.name, peer.size, peer.region_size):
        return SyncDecision(
            Action.REFUSE,
            f"volume mismatch: local {local.name}/{local.size}B/{local.region_size}B regions, "
            f"peer {peer.name}/{peer.size}B/{peer.region_size}B regions",
        )
    data = _by_data(local, peer)
    if data.action == Action.SPLIT_BRAIN:
        return data  # both changed while apart: only a resolve helps, whatever the epochs
    # An operator's resolve (discard one side) names the survivor; it then learns the
    # newest epoch on connect. Otherwise a primary with an older epoch is stale.
    resolving = local.discard_local or peer.discard_local
    if not resolving and peer.role == Role.PRIMARY and peer.epoch < local.epoch:
        return SyncDecision(
            Action.STALE_EPOCH,
            f"peer is primary with fencing epoch {peer.epoch}, older than epoch "
            f"{local.epoch} seen here: the peer is a stale primary",
        )
    if not resolving and local.role == Role.PRIMARY and local.epoch < peer.epoch:
        return SyncDecision(
            Action.STALE_EPOCH,
            f"this primary's fencing epoch {local.epoch} is older than epoch {peer.epoch} "
            "seen by the peer: this side is a stale primary",
        )
    if local.role == Role.PRIMARY and peer.role == Role.PRIMARY:
        return SyncDecision(Action.REFUSE, "both sides are primary; demote one before connecting")
    decision = data
    if decision.action == Action.TARGET and local.role == Role.PRIMARY:
        return SyncDecision(
            Action.REFUSE,
            f"this side is primary but would have to become sync target ({decision.reason}); "
            "demote it first",
        )
    if decision.action == Action.SOURCE and peer.role == Role.PRIMARY:
        return SyncDecision(
            Action.REFUSE,
            f"the peer is primary but would have to become sync target ({decision.reason}); "
            "demote it first",
        )
    return decision


def _by_data(local: SideView, peer: SideView) -> SyncDecision:
    lg, pg = local.generation, peer.generation
    for side, view in (("local", local), ("peer", peer)):
        if view.disk == DiskState.DISKLESS:
            return SyncDecision(
                Action.REFUSE,
                f"{side} disk is Diskless (detached after an I/O error): nothing to "
                "resync to or from until it is repaired and restarted",
            )
    if local.discard_local and peer.discard_local:
        return SyncDecision(Action.REFUSE, "both sides asked to discard their own data")
    if local.discard_local or peer.discard_local:
        victim_is_local = local.discard_local
        related = lg.bitmap != NO_GENERATION and lg.bitmap == pg.bitmap
        action = Action.TARGET if victim_is_local else Action.SOURCE
        who = "this side" if victim_is_local else "the peer"
        return SyncDecision(action, f"{who} discards its changes (resolve)", full=not related)
    local_good, peer_good = local.disk in _GOOD, peer.disk in _GOOD
    if not local_good and not peer_good:
        return SyncDecision(
            Action.NO_DATA,
            f"neither side has usable data yet (local {local.disk.value}, peer "
            f"{peer.disk.value}): promote one with --force --accept-data-loss to start "
            "the initial full sync",
        )
    if not peer_good:
        full = not (lg.bitmap != NO_GENERATION and lg.bitmap == pg.current)
        return SyncDecision(Action.SOURCE, f"peer disk is {peer.disk.value}", full=full)
    if not local_good:
        full = not (pg.bitmap != NO_GENERATION and pg.bitmap == lg.current)
        return SyncDecision(Action.TARGET, f"local disk is {local.disk.value}", full=full)
    if lg.current == pg.current:
        return _same_generation(local, peer)
    if lg.bitmap != NO_GENERATION and lg.bitmap == pg.current:
        return SyncDecision(
            Action.SOURCE, f"local changed since generation {pg.current} (peer's current)"
        )
    if pg.bitmap != NO_GENERATION and pg.bitmap == lg.current:
        return SyncDecision(
            Action.TARGET, f"peer changed since generation {lg.current} (local current)"
        )
    if lg.bitmap != NO_GENERATION and lg.bitmap == pg.bitmap:
        return SyncDecision(
            Action.SPLIT_BRAIN,
            f"both sides changed since generation {lg.bitmap}: "
            f"local current {lg.current}, peer current {pg.current}",
        )
    if pg.current in lg.history or pg.current == lg.bitmap:
        return SyncDecision(Action.SOURCE, "peer holds an older generation", full=True)
    if lg.current in pg.history or lg.current == pg.bitmap:
        return SyncDecision(Action.TARGET, "local holds an older generation", full=True)
    return SyncDecision(
        Action.SPLIT_BRAIN,
        f"unrelated data: local {lg.current} (bitmap {lg.bitmap}), "
        f"peer {pg.current} (bitmap {pg.bitmap})",
    )


def _same_generation(local: SideView, peer: SideView) -> SyncDecision:
    """Same data generation. Bits left in a bitmap (writes in flight when a primary
    crashed, or a resync that was cut short) still have to travel."""
    if local.disk == DiskState.OUTDATED and peer.disk == DiskState.UP_TO_DATE:
        return SyncDecision(Action.TARGET, "same generation, local disk is Outdated", full=True)
    if peer.disk == DiskState.OUTDATED and local.disk == DiskState.UP_TO_DATE:
        return SyncDecision(Action.SOURCE, "same generation, peer disk is Outdated", full=True)
    if local.dirty_regions == 0 and peer.dirty_regions == 0:
        return SyncDecision(
            Action.IN_SYNC, f"both sides hold generation {local.generation.current}"
        )
    reason = (
        f"same generation, {local.dirty_regions + peer.dirty_regions} regions "
        "left dirty (writes in flight at a crash)"
    )
    if local.role == Role.PRIMARY or peer.role == Role.PRIMARY:
        return SyncDecision(Action.SOURCE if local.role == Role.PRIMARY else Action.TARGET, reason)
    local_first = (local.dirty_regions, peer.node_id) > (peer.dirty_regions, local.node_id)
    return SyncDecision(Action.SOURCE if local_first else Action.TARGET, reason)
