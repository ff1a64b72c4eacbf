"""What the guests' serial log and the agents' logs prove about one stretch of the story.

The heartbeat guest (lab/init.sh, `disk=1`) prints `HEARTBEAT n`, writes n to its disk
with a flush and prints `ACKED n` only once the disk acknowledged it; after a (re)boot it
prints `LABVM BOOTED ... start_counter=s`, s being the value it read back from its disk.
So, from the log alone:

- an acknowledged value is lost when a boot starts below the last `ACKED` before it;
- a heartbeat is missing when, within one boot, the counter jumps (a live move that
  lost guest state would show it);
- a heartbeat is unacknowledged when its disk write failed (no `ACKED n` before the next
  heartbeat): the guest saw an I/O error, e.g. its disk was demoted under it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_EVENT = re.compile(rb"LABVM BOOTED \S+ start_counter=(\d+)|HEARTBEAT (\d+)|ACKED (\d+)")
SELF_FENCE = "self-fence: "  # how the agent logs a self-fence (drorch.agent.loop)


@dataclass(frozen=True)
class CounterAudit:
    boots: tuple[int, ...] = ()  # start_counter of each boot in the stretch
    acked_lost: int = 0
    beats_missing: int = 0
    unacked: int = 0
    last_acked: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "boots": list(self.boots),
            "acked_values_lost": self.acked_lost,
            "heartbeats_missing": self.beats_missing,
            "heartbeats_unacked": self.unacked,
            "last_acked": self.last_acked,
        }


def audit_counter(data: bytes, since: int = 0) -> CounterAudit:
    """Audit the events at byte offset `since` or later; the ones before only set the
    state they start from (the last acknowledged value, the last heartbeat)."""
    boots: list[int] = []
    lost = missing = unacked = 0
    last_acked: int | None = None
    beat: int | None = None  # the last heartbeat of the current boot
    pending = False  # that heartbeat is not acknowledged yet
    for m in _EVENT.finditer(data):
        counted = m.start() >= since
        booted, heartbeat, acked = m.groups()
        if booted is not None:
            start = int(booted)
            if counted:
                boots.append(start)
                lost += max(0, (last_acked or 0) - start)
                unacked += pending
            beat, pending = start, False
        elif heartbeat is not None:
            n = int(heartbeat)
            if counted:
                missing += max(0, n - (beat + 1)) if beat is not None else 0
                unacked += pending
            beat, pending = n, True
        elif acked is not None:
            last_acked = int(acked)
            if beat == last_acked:
                pending = False
    return CounterAudit(tuple(boots), lost, missing, unacked, last_acked)


def audit_serial(serial_log: Path, since: int = 0) -> CounterAudit:
    try:
        return audit_counter(serial_log.read_bytes(), since)
    except FileNotFoundError:
        return CounterAudit()


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def self_fences(agent_log: Path, since: int = 0) -> list[str]:
    """The self-fence lines an agent logged at byte offset `since` or later."""
    try:
        with open(agent_log, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if SELF_FENCE in line]
