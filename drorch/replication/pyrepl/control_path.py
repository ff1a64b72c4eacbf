"""Where a local replica's control socket lives when its natural path is too long.

A unix socket path holds at most 107 bytes (sun_path). The driver's natural path is
`<base>/.drorch-state/pyrepl/VOLUME@NODE.ctl`, which a deep state directory (or a test
run's temporary folder) can push past that; binding then fails ("AF_UNIX path too long").
Such a path is replaced, the same way by the daemon's starter and by every client, with
a short one: `<tmp>/drorch-<uid>/<hash of the natural path>.ctl`, in a folder only this
user can enter (created 0700, refused if it is anyone else's or open to others), so the
socket is as private as in the state directory. An explicit `--control` is never
changed (`repl serve` refuses a path that is too long, and says so)."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

from drorch.replication.base import ReplicationError

SUN_PATH_MAX = 107


def short_control_path(natural: Path, tmp: Path | None = None) -> Path:
    """`natural`, or its short stand-in when it does not fit in sun_path."""
    if len(os.fsencode(str(natural))) <= SUN_PATH_MAX:
        return natural
    folder = (tmp or Path(tempfile.gettempdir())) / f"drorch-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.lstat()
    except OSError as exc:
        raise ReplicationError(
            f"{natural}: too long for a unix socket, and {folder}: {exc}"
        ) from exc
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ReplicationError(
            f"{natural}: too long for a unix socket, and {folder} (for the short stand-in)"
            " is not a private folder of this user: remove it, or use a shorter state"
            " directory"
        )
    digest = hashlib.sha256(str(natural).encode()).hexdigest()[:24]
    short = folder / f"{digest}.ctl"
    if len(os.fsencode(str(short))) > SUN_PATH_MAX:
        raise ReplicationError(
            f"{natural}: too long for a unix socket, and so is its stand-in {short}"
            " (a shorter TMPDIR, or a shorter state directory)"
        )
    return short


def replica_control_path(base_dir: Path, volume: str, node: str) -> Path:
    """The control socket the pyrepl driver uses for VOLUME@NODE under `base_dir` (the
    lab and the tests that ask a replica directly must find the same one)."""
    return short_control_path(base_dir / ".drorch-state" / "pyrepl" / f"{volume}@{node}.ctl")
