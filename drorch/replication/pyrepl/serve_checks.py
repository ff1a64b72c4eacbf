"""What `repl serve` refuses before it touches anything: every problem at once, in the
words of the option that caused it. The daemon would otherwise start and fail later (a
region larger than the volume), or quietly hide data (a backing file larger than
--size)."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drorch.replication.pyrepl.daemon import ServeOptions

MIN_REGION = 4096


def serve_problems(options: ServeOptions) -> list[str]:
    e = options.engine
    problems: list[str] = []
    if not e.name.strip():
        problems.append("--name must not be empty (it is the volume and NBD export name)")
    if e.size <= 0:
        problems.append("--size must be at least one byte")
    region = e.region_size
    if region < MIN_REGION or region & (region - 1):
        problems.append(f"--region-size {region} must be a power of two of at least 4096")
    elif e.size > 0 and region > e.size:
        problems.append(f"--region-size {region} is larger than the volume ({e.size} bytes)")
    if e.mode == "async" and e.max_lag_bytes <= 0:
        problems.append("--max-lag must be positive: an async primary needs a send queue")
    if e.mode == "async" and e.fencing == "resource-only":
        problems.append(
            "--fencing resource-only needs --mode sync: an async primary acknowledges "
            "before the peer has the write anyway"
        )
    if e.fencing == "dont-care" and (e.fence_peer_cmd or e.unfence_peer_cmd):
        problems.append("--fence-peer-cmd/--unfence-peer-cmd need --fencing resource-only")
    listen = options.listen if options.listen and options.listen[1] else None  # :0 = any free
    if listen is not None and listen == options.peer:
        problems.append("--listen and --peer are the same address: this side would dial itself")
    if listen is not None and listen == options.nbd:
        problems.append("--listen and --nbd are the same address")
    try:
        st = os.stat(e.backing)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        problems.append(f"--backing {e.backing}: {exc.strerror or exc}")
        st = None
    if st is not None and stat.S_ISREG(st.st_mode) and st.st_size > e.size > 0:
        problems.append(
            f"--backing {e.backing} holds {st.st_size} bytes, more than --size {e.size}:"
            " refusing to hide the data beyond the end (give its real size)"
        )
    return problems
