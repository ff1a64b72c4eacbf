"""Cache flushes the block devices have completed, from /sys/dev/block/M:m/stat (field 16,
"flush requests completed", Linux 5.5+), to tell from outside what a write promised: a
replicated write made durable at both sites costs two device flushes here (the sites
share the disk), one made durable at one site costs one."""

from __future__ import annotations

import os
from pathlib import Path


def _stat_file(path: Path) -> Path:
    st = os.stat(path)
    return Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/stat")


def flushes(*paths: Path) -> int:
    """Flush requests completed so far by the devices holding `paths` (each counted once)."""
    total = 0
    for stat in {_stat_file(p) for p in paths}:
        fields = stat.read_text().split()
        if len(fields) < 17:
            raise RuntimeError(f"{stat} has no flush counters (kernel older than 5.5?)")
        total += int(fields[15])
    return total
