"""`drorch lab torture`: judging one run's logs into a verdict (pure, no I/O).

Three witnesses of a split brain, each judged on its own:
- the agents' role logs (`roles-<cluster>-<node>.jsonl`: what each agent found it may
  write, logged on every change). A killed site logs nothing, and a frozen agent logs
  nothing until it is thawed; so a kill of the site and its soft watchdog firing end
  its primary time where they happen (the processes that wrote are dead from then on).
  An entry whose every item is `(unknown)` (the agent could not ask its replicator) is
  not counted here: the replica samples say what that replica was;
- the replicas, sampled during the run: both answering `primary` at one instant;
- the hypervisors, sampled during the run: the guest's QEMU alive at both sites.
Overlaps are merged into intervals: one finding per interval.

An acknowledged counter value is lost when the guest booted below the last value it
had logged as acknowledged (drorch.lab.counter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sample:
    at: float  # wall clock
    vm_sites: tuple[str, ...]  # sites where the guest's QEMU is alive
    primaries: tuple[str, ...]  # sites whose replica answered role primary


@dataclass(frozen=True)
class Stop:
    at: float
    site: str
    why: str  # "kill-site", "softdog fired"


@dataclass(frozen=True)
class Finding:
    source: str  # role-logs, replicas, hypervisors
    start: float
    end: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "start": self.start, "end": self.end,
                "seconds": round(self.end - self.start, 2), "detail": self.detail}  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    split_brains: tuple[Finding, ...]
    acked_lost: int
    recovered: bool
    recovery_s: float | None  # heal -> recovered
    fault_to_healthy_s: float | None  # first fault -> recovered
    mode: str = "sync"
    notes: tuple[str, ...] = field(default=())

    @property
    def safe(self) -> bool:
        """No split brain and, in sync mode, no acknowledged value lost."""
        return not self.split_brains and (self.mode != "sync" or self.acked_lost == 0)


def _writes(primary: Sequence[str]) -> bool:
    return any("(unknown)" not in item for item in primary)


def role_overlaps(
    roles: Iterable[dict[str, Any]], stops: Iterable[Stop], start: float, end: float
) -> list[Finding]:
    """Intervals within [start, end] in which both sites were primary by their role
    logs, a stop ending a site's primary time where it happened."""
    events: list[tuple[float, int, str, bool, str]] = []
    for r in roles:
        events.append((float(r["at"]), 1, str(r["site"]), _writes(r.get("primary") or []),
                       str(r.get("node", ""))))  # fmt: skip
    for s in stops:
        events.append((s.at, 0, s.site, False, s.why))  # a stop sorts before a log line
    events.sort()
    now: dict[str, bool] = {}
    findings: list[Finding] = []
    opened: float | None = None
    for at, _, site, primary, _who in events:
        was = len(now) == 2 and all(now.values())
        now[site] = primary
        both = len(now) == 2 and all(now.values())
        if both and not was:
            opened = at
        elif was and not both and opened is not None:
            findings += _clip("role-logs", opened, at, start, end, "both sites primary")
            opened = None
    if opened is not None:
        findings += _clip("role-logs", opened, end, start, end, "both sites primary")
    return findings


def _clip(source: str, a: float, b: float, start: float, end: float, what: str) -> list[Finding]:
    a, b = max(a, start), min(b, end)
    return [Finding(source, a, b, what)] if b > a else []


def sample_overlaps(samples: Sequence[Sample]) -> list[Finding]:
    """Runs of consecutive samples with two primaries, or the guest at both sites."""
    findings: list[Finding] = []
    picks: list[tuple[str, Callable[[Sample], tuple[str, ...]], str]] = [
        ("replicas", lambda s: s.primaries, "both replicas primary"),
        ("hypervisors", lambda s: s.vm_sites, "the guest running at both sites"),
    ]
    for source, pick, what in picks:
        first: Sample | None = None
        last: Sample | None = None
        for s in sorted(samples, key=lambda s: s.at):
            if len(set(pick(s))) >= 2:
                first = first or s
                last = s
            elif first is not None and last is not None:
                findings.append(Finding(source, first.at, last.at, _seen(what, first, last, s)))
                first = last = None
        if first is not None and last is not None:
            findings.append(Finding(source, first.at, last.at, _seen(what, first, last, None)))
    return findings


def _seen(what: str, first: Sample, last: Sample, after: Sample | None) -> str:
    tail = f", gone by {after.at - first.at:.1f} s" if after else ", still at the end"
    return f"{what} (sampled {last.at - first.at:.1f} s{tail})"


def judge(
    *,
    roles: Iterable[dict[str, Any]],
    stops: Iterable[Stop],
    samples: Sequence[Sample],
    acked_lost: int,
    start: float,
    first_fault: float | None,
    heal: float | None,
    recovered_at: float | None,
    end: float,
    mode: str = "sync",
    notes: Sequence[str] = (),
) -> Verdict:
    """The verdict of one run; times are wall-clock seconds."""
    stops = list(stops)
    found = role_overlaps(roles, stops, start, end) + sample_overlaps(samples)
    found.sort(key=lambda f: (f.start, f.source))
    recovery = round(recovered_at - heal, 1) if recovered_at is not None and heal else None
    fault_to_healthy = (
        round(recovered_at - first_fault, 1)
        if recovered_at is not None and first_fault is not None
        else None
    )
    return Verdict(
        tuple(found),
        acked_lost,
        recovered_at is not None,
        recovery,
        fault_to_healthy,
        mode,
        tuple(notes),
    )


def disk_lost(last_acked: int | None, disks: dict[str, int | None]) -> int:
    """Acknowledged values no replica holds: the last acknowledged value minus the best
    counter on any replica's disk (0 when one holds it, or nothing was acknowledged)."""
    held = [n for n in disks.values() if n is not None]
    if last_acked is None:
        return 0
    return max(0, last_acked - max(held, default=0))


def totals(verdicts: Sequence[Verdict], faults: Sequence[int]) -> dict[str, Any]:
    """The summary over every run: counts, and the median time to recovery."""
    import statistics

    times = [v.recovery_s for v in verdicts if v.recovery_s is not None]
    spans = [v.fault_to_healthy_s for v in verdicts if v.fault_to_healthy_s is not None]
    return {
        "runs": len(verdicts),
        "faults_injected": sum(faults),
        "split_brains": sum(len(v.split_brains) for v in verdicts),
        "runs_with_split_brain": sum(1 for v in verdicts if v.split_brains),
        "acked_values_lost": sum(v.acked_lost for v in verdicts),
        "recovered": sum(1 for v in verdicts if v.recovered),
        "median_recovery_s": round(statistics.median(times), 1) if times else None,
        "max_recovery_s": max(times) if times else None,
        "median_fault_to_healthy_s": round(statistics.median(spans), 1) if spans else None,
    }
