"""`drorch drbd verify` and `drorch drbd watch`: the commands that follow DRBD's events
(`drbdsetup events2`) on a node, with a progress bar while DRBD compares or resyncs
(`FOLLOWING`, added to the `drbd` group by drbd_cmd beside drbd_ops_cmd's OPERATIONS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from drorch.cli.drbd_common import STATUS_COLUMNS, config_option, node_option, replicator
from drorch.cli.flags import duration
from drorch.cli.output import format_option, render
from drorch.model.states import in_sync, is_syncing
from drorch.remote.base import CommandTimeout


@click.command("verify")
@config_option
@node_option
@click.argument("volume")
@format_option()
def verify_cmd(config: Path, node: str | None, volume: str, fmt: str) -> None:
    """Online verify: compare checksums with the peer and list out-of-sync blocks."""
    from drorch.cli.progress import ProgressBar

    bar = ProgressBar(f"verify {volume}", 1000)

    def progress(st: Any) -> None:
        done = st.extra.get("resync_done_percent")
        if st.extra.get("drbd", {}).get("replication") in ("VerifyS", "VerifyT"):
            bar.update(int((done or 0.0) * 10), "comparing checksums with the peer")

    with replicator(config, volume, node) as drv:
        drv.on_progress = progress
        result = drv.verify()
        bar.finish(f"{len(result.out_of_sync)} blocks out of sync")
    render(
        {
            "volume": volume,
            "blocks_checked": result.regions_checked,
            "block_size": result.region_size,
            "out_of_sync_blocks": len(result.out_of_sync),
            "out_of_sync_offsets": list(result.out_of_sync),
        },
        fmt,
    )


@click.command("watch")
@config_option
@node_option
@click.argument("volume")
@click.option("--until-synced", is_flag=True, help="Stop when the resync is finished.")
@click.option("--timeout", callback=duration, help="Stop after this long, e.g. 30s.")
@click.option("--count", type=int, default=None, help="Stop after this many changes.")
@format_option()
def watch_cmd(
    config: Path,
    node: str | None,
    volume: str,
    until_synced: bool,
    timeout: float | None,
    count: int | None,
    fmt: str,
) -> None:
    """Follow drbdsetup events2: one status per change; a progress bar while resyncing.
    --until-synced returns once both disks are UpToDate and connected (at once if they
    already are)."""
    from drorch.cli.output import table
    from drorch.cli.progress import ProgressBar

    columns = [c for c in STATUS_COLUMNS if c != "node"]
    with replicator(config, volume, node) as drv:
        bar: ProgressBar | None = None
        header_done = False
        last_row = ""
        seen = 0
        try:
            for st in drv.watch(timeout):
                seen += 1
                syncing = is_syncing(st.connection)
                if syncing and fmt == "table":
                    bar = bar or ProgressBar(f"resync {volume}", 1000)
                    done = st.extra.get("resync_done_percent", st.percent_in_sync)
                    eta = st.resync_eta_seconds
                    bar.update(int(done * 10), f"eta {eta:.0f}s" if eta is not None else "")
                else:
                    if bar is not None:
                        bar.finish("resync finished")
                        bar = None
                    if fmt == "table":
                        # a wide blank template row keeps the columns aligned across rows
                        lines = table([st.as_dict(), dict.fromkeys(columns, " " * 12)], columns)
                        header, row = lines.splitlines()[:2]
                        if row != last_row:  # events that change no shown column
                            click.echo(row if header_done else f"{header}\n{row}")
                        header_done, last_row = True, row
                    else:
                        render(st.as_dict(), fmt)
                synced = in_sync(st.disk, st.connection, peer_disk=st.peer_disk)
                if until_synced and synced:
                    break
                if count is not None and seen >= count:
                    break
        except CommandTimeout:
            pass  # --timeout ends a bounded watch


FOLLOWING: list[click.Command] = [verify_cmd, watch_cmd]
