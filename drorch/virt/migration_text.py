"""The one-line description of a live-migration progress sample, shared by the bar of
`drorch vm migrate` and the runbook's `vm.migrate_live` step, so both read the same."""

from __future__ import annotations

from drorch.virt.base import MigrationProgress

MIB = 2**20


def progress_detail(p: MigrationProgress) -> str:
    """`iter 3  sent 96 MiB  left 12 MiB  dirty 8 MiB/s  downtime 140/300 ms [...]`."""
    parts = [
        f"iter {p.iteration}",
        f"sent {p.data_processed / MIB:.0f} MiB",
        f"left {p.data_remaining / MIB:.0f} MiB",
        f"dirty {p.dirty_rate / MIB:.0f} MiB/s",
        f"downtime {p.expected_downtime_ms}/{p.max_downtime_ms} ms",
    ]
    if p.auto_converge:
        parts.append("auto-converge")
    if p.postcopy:
        parts.append("post-copy")
    return "  ".join(parts)
