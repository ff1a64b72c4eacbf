"""Where drorch keeps state: `$DRORCH_STATE_DIR`, else /var/lib/drorch as root, else
`$XDG_STATE_HOME/drorch` (~/.local/state/drorch). One place, used by everything that
keeps state (`Environment.state_dir`, the agent, the runbook journal)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def default_state_dir(
    environ: Mapping[str, str] | None = None, euid: int | None = None, home: Path | None = None
) -> Path:
    """Where drorch keeps state (runbook journal, run locks): `$DRORCH_STATE_DIR`, else
    `/var/lib/drorch` as root, else `$XDG_STATE_HOME/drorch` (`~/.local/state/drorch`)."""
    env = os.environ if environ is None else environ
    if env.get("DRORCH_STATE_DIR"):
        return Path(env["DRORCH_STATE_DIR"])
    if (os.geteuid() if euid is None else euid) == 0:
        return Path("/var/lib/drorch")
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "drorch"
    return (home or Path.home()) / ".local" / "state" / "drorch"
