"""`EngineConfig`: what the replication engine of one volume is started with (engine.py).

The volume (name, backing file, size), the mode and role it starts in, and the tunables
of the write path, resync, fencing and freezing, as given to `drorch repl serve`; the
defaults are the model's (`PyreplOptions`, see tests/layers/test_one_default.py). A live
mode switch (modeswitch.py) changes the engine's copy, never the one it started with.
Also where the volume's metadata, bitmap and activity log live beside the backing file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drorch.replication.base import Role
from drorch.replication.pyrepl import freeze
from drorch.replication.pyrepl.activity import DEFAULT_SLOTS
from drorch.replication.pyrepl.receiver import PEER_SILENCE_TIMEOUT


@dataclass(frozen=True)
class EngineConfig:
    name: str
    backing: Path
    size: int
    mode: str = "sync"
    role: Role = Role.SECONDARY
    meta_path: Path | None = None
    region_size: int = 64 * 1024
    max_lag_bytes: int = 64 * 1024 * 1024
    on_congestion: str = "block"
    resync_rate: int = 0  # bytes per second a resync may use; 0 = as fast as possible
    al_extents: int = DEFAULT_SLOTS  # activity log slots (DRBD's al-extents)
    # sync only: resource-only freezes I/O when the peer is lost (freeze.py); dont-care
    # acknowledges writes the peer lacks (RPO > 0)
    fencing: str = "resource-only"
    peer_timeout: float = PEER_SILENCE_TIMEOUT  # a silent peer is lost (DRBD: timeout)
    freeze_timeout: float = freeze.DEFAULT_FREEZE_TIMEOUT  # bound of one held I/O
    fence_peer_cmd: str | None = None  # fence_hook.py
    unfence_peer_cmd: str | None = None

    @property
    def meta_file(self) -> Path:
        return self.meta_path or self.backing.with_name(self.backing.name + ".pyrepl-meta")

    @property
    def bitmap_file(self) -> Path:
        return self.meta_file.with_name(self.meta_file.name + ".bitmap")

    @property
    def ledger_file(self) -> Path:
        return self.meta_file.with_name(self.meta_file.name + ".unshipped")

    @property
    def activity_file(self) -> Path:
        return self.meta_file.with_name(self.meta_file.name + ".al")
