"""Optional capabilities a `Replicator` driver may have beyond the seam in `base.py`.

Runbook steps ask `isinstance(rep, DualPrimary)` / `isinstance(rep, ModeSwitch)` and,
when a driver lacks the capability, fail with a coded reason instead of guessing.

- `DualPrimary`: both replicas may be primary at once, for a live hand-over (DRBD's
  `allow-two-primaries`). Only meaningful with sync replication: every write is on both
  disks before it is acknowledged, so the two QEMUs see the same blocks.
- `ModeSwitch`: change sync <-> async while running (e.g. async -> sync before a
  hurricane move).
- `PointInTime`: a read-only NBD export of the replica frozen when taken, while
  replication keeps writing the replica (the test-recovery drill boots copies from it).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class DualPrimary(Protocol):
    def two_primaries_allowed(self) -> bool:
        """Whether a second primary may be promoted now (read only)."""

    def allow_two_primaries(self) -> None:
        """Let the peer be promoted while this side is primary. Idempotent. Raises
        ReplicationError when the volume is not connected in sync mode."""

    def forbid_two_primaries(self) -> None:
        """Refuse a second primary again. Idempotent. Raises ReplicationError while both
        sides are primary (demote one first)."""


@runtime_checkable
class ModeSwitch(Protocol):
    def set_mode(self, mode: str, *, wait: bool = True) -> None:
        """Replicate `sync` or `async` from now on. Idempotent; ValueError for another
        mode; ReplicationError when refused.

        A primary switching async -> sync may first have to drain the writes its peer
        lacks: until then `status().mode` still says async (writes are acknowledged as
        before) and `lag_bytes + out_of_sync_bytes` is what is left. `wait=True` returns
        once the switch is complete (ReplicationError past the driver's own deadline;
        the switch goes on); `wait=False` returns once it is requested, for a caller
        that follows the drain through `status()` (the runbook step draws it). Drivers
        that switch at once treat both alike."""


@runtime_checkable
class PointInTime(Protocol):
    def take_point_in_time(self, label: str, store: str) -> str:
        """Freeze a read-only view of this replica as it is now (copy-on-write: the
        chunks replication overwrites afterwards are kept in the file `store`, which the
        replica's node creates); return the NBD URI of its read-only export. Taking a
        label again returns the same view. Replication is not paused. Raises
        ReplicationError when the view cannot be made."""

    def drop_point_in_time(self, label: str) -> bool:
        """Remove the view and its store. Idempotent: False when there was none."""
