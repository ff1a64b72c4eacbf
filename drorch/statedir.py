"""Where drorch keeps state: `$DRORCH_STATE_DIR`, else /var/lib/drorch as root, else
~/.local/state/drorch. One place, used by everything that keeps state."""

from __future__ import annotations

import os
from pathlib import Path


def default_state_dir() -> Path:
    env = os.environ.get("DRORCH_STATE_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/drorch")
    return Path.home() / ".local" / "state" / "drorch"
