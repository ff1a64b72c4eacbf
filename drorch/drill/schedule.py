"""When each drill is due: its cron expression in its time zone, plus a deterministic
offset inside its `window` so that many clusters with the same schedule do not all
start on the same second (no thundering herd).

The offset is a hash of the cluster and drill names, so it is the same on every
scheduler, every restart and every week: an operator can predict it, and two
schedulers serving the same configs agree on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from drorch.model.cron import latest_at_or_before, occurrences
from drorch.model.types import Cluster, Drill


def jitter(cluster: str, drill: str, window: float) -> float:
    """The drill's offset in [0, window), whole seconds, from a hash of the names."""
    if window <= 0:
        return 0.0
    digest = hashlib.sha256(f"{cluster}\0{drill}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return float(int(fraction * window))


@dataclass(frozen=True)
class DrillRef:
    """One drill of one cluster, and the config file it came from."""

    config: Path
    cluster: Cluster
    drill: Drill

    @property
    def key(self) -> tuple[str, str]:
        return (self.cluster.name, self.drill.name)

    @property
    def sites(self) -> tuple[str, ...]:
        """Every drill moves between both sites of its cluster, so it uses both."""
        return tuple(s.name for s in self.cluster.sites)

    @property
    def offset(self) -> float:
        return jitter(self.cluster.name, self.drill.name, self.drill.window)


@dataclass(frozen=True)
class Occurrence:
    """One due time of one drill: `nominal` is the cron time, `start_at` adds the
    jitter, `deadline` is the latest start (`start_at + starting_deadline`)."""

    ref: DrillRef
    nominal: float
    start_at: float
    deadline: float

    def as_row(self) -> dict[str, object]:
        d = self.ref.drill
        return {
            "cluster": self.ref.cluster.name,
            "drill": d.name,
            "kind": d.kind.value,
            "target": d.target,
            "sites": list(self.ref.sites),
            "cron": d.schedule,
            "tz": d.tz,
            "nominal": iso(self.nominal, d.tz),
            "start_at": iso(self.start_at, d.tz),
            "start_at_utc": iso(self.start_at),
            "offset_s": self.start_at - self.nominal,
            "latest_start": iso(self.deadline, d.tz),
        }


def iso(ts: float, tz: str = "UTC") -> str:
    from drorch.model.cron import zone

    return datetime.fromtimestamp(ts, zone(tz)).isoformat(timespec="seconds")


def refs_of(config: Path, cluster: Cluster) -> list[DrillRef]:
    return [DrillRef(config, cluster, d) for d in cluster.drills]


def occurrence(ref: DrillRef, nominal: datetime) -> Occurrence:
    t = nominal.timestamp()
    start = t + ref.offset
    return Occurrence(ref, t, start, start + ref.drill.starting_deadline)


def next_occurrences(ref: DrillRef, after: float) -> Iterator[Occurrence]:
    """The drill's occurrences whose nominal time is strictly after `after`."""
    d = ref.drill
    for nominal in occurrences(d.schedule, d.tz, datetime.fromtimestamp(after, UTC)):
        yield occurrence(ref, nominal)


def latest_due(ref: DrillRef, now: float) -> Occurrence | None:
    """The last occurrence whose start time (with jitter) is at or before `now`."""
    d = ref.drill
    when = datetime.fromtimestamp(now - ref.offset, UTC)
    nominal = latest_at_or_before(d.schedule, d.tz, when)
    return None if nominal is None else occurrence(ref, nominal)


def count_between(ref: DrillRef, after: float, until: float, limit: int = 1000) -> int:
    """How many nominal times fall in (after, until], counting at most `limit`."""
    n = 0
    for occ in next_occurrences(ref, after):
        if occ.nominal > until or n >= limit:
            break
        n += 1
    return n


def upcoming(refs: Iterable[DrillRef], now: float, count: int = 3) -> list[Occurrence]:
    """The next `count` starts of every drill (not yet started at `now`), soonest first."""
    out: list[Occurrence] = []
    for ref in refs:
        # a jittered start may still be ahead although its nominal time has passed
        it = next_occurrences(ref, now - ref.offset - 1)
        got = 0
        for occ in it:
            if occ.start_at < now:
                continue
            out.append(occ)
            got += 1
            if got >= count:
                break
    return sorted(out, key=lambda o: (o.start_at, o.ref.key))
