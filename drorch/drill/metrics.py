"""Prometheus metrics (prometheus-client's text exposition) for the drills and the
cluster state they depend on.

A custom collector reads the drill history (and, for each cluster given, observes the
cluster once) at every scrape, so `drorch metrics serve` is always current and
`drorch metrics textfile PATH` writes what node_exporter's textfile collector reads.
Why a textfile first: drills are rare, their results are on disk, and the textfile
collector needs no extra listening port or daemon on a DR node; the scheduler rewrites
the file after every drill. `serve` is there for a Prometheus that scrapes directly.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from drorch.drill.history import History
from drorch.drill.trend import trends
from drorch.model.types import Cluster


@dataclass
class ClusterSource:
    """A cluster to observe at each scrape: `observe()` returns its Snapshot."""

    cluster: Cluster
    observe: Callable[[], object]


def _g(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class DrillCollector(Collector):
    def __init__(self, state_dir: Path, clusters: list[ClusterSource] | None = None) -> None:
        self.state_dir = state_dir
        self.clusters = clusters or []

    def collect(self) -> Iterator[Metric]:
        yield from self._drills()
        for source in self.clusters:
            yield from self._cluster(source)

    def _drills(self) -> Iterator[Metric]:
        k = ["cluster", "drill", "kind"]
        last_ts = _g("drorch_drill_last_timestamp_seconds", "When the last due drill was "
                     "started, skipped or missed (Unix time).", k)  # fmt: skip
        last_ok = _g("drorch_drill_last_success", "1 if the last due drill succeeded.", k)
        result = _g("drorch_drill_last_result", "The last due drill's result (value 1).",
                    [*k, "result"])  # fmt: skip
        rto = _g("drorch_drill_rto_seconds", "RTO of the last successful drill.", k)
        rto_t = _g("drorch_drill_rto_target_seconds", "The drill's configured RTO target.", k)
        down = _g("drorch_drill_downtime_seconds", "Each VM's worst outage in the last "
                  "successful drill.", ["cluster", "drill", "vm"])  # fmt: skip
        reg = _g("drorch_drill_regression", "1 if the last drill is over its target or "
                 "regressed against its median.", k)  # fmt: skip
        count = _g("drorch_drill_results", "Drills in the history by result.",
                   ["cluster", "drill", "result"])  # fmt: skip
        with History(self.state_dir) as h:
            rows = h.rows(limit=100000)
        counts: dict[tuple[str, str, str], int] = {}
        for r in rows:
            key = (r.cluster, r.drill, r.result)
            counts[key] = counts.get(key, 0) + 1
        for (c, d, res), n in sorted(counts.items()):
            count.add_metric([c, d, res], n)
        latest_ok = {(r.cluster, r.drill): r for r in rows if r.result == "succeeded"}
        for t in trends(rows):
            labels = [t.cluster, t.drill, t.kind]
            last = next(r for r in reversed(rows) if (r.cluster, r.drill) == (t.cluster, t.drill))
            last_ts.add_metric(labels, last.started_at)
            last_ok.add_metric(labels, 1.0 if t.last_result == "succeeded" else 0.0)
            result.add_metric([*labels, t.last_result], 1.0)
            reg.add_metric(labels, 1.0 if {"over-target", "regression"} & set(t.flags) else 0.0)
            if t.last_rto_s is not None:
                rto.add_metric(labels, t.last_rto_s)
            if t.target_rto_s is not None:
                rto_t.add_metric(labels, t.target_rto_s)
            ok = latest_ok.get((t.cluster, t.drill))
            for vm, secs in ok.downtime_s.items() if ok else ():
                down.add_metric([t.cluster, t.drill, vm], secs)
        yield from (last_ts, last_ok, result, rto, rto_t, down, reg, count)

    def _cluster(self, source: ClusterSource) -> Iterator[Metric]:
        from drorch.decide.snapshot import Snapshot

        c = source.cluster
        snap = source.observe()
        assert isinstance(snap, Snapshot)
        epoch = _g("drorch_quorum_epoch", "The highest quorum epoch seen.", ["cluster"])
        epoch.add_metric([c.name], snap.epoch)
        held = _g("drorch_quorum_held", "1 if the witness says this site holds the lease.",
                  ["cluster", "site"])  # fmt: skip
        for site, view in sorted(snap.witness.items()):
            held.add_metric([c.name, site], 1.0 if view.holder == site else 0.0)
        outdated = _g("drorch_witness_outdated_epoch", "The epoch since which the witness "
                      "records a replica as outdated.", ["cluster", "volume", "site"])  # fmt: skip
        for (vol, site), since in sorted(snap.outdated.items()):
            outdated.add_metric([c.name, vol, site], since)
        lab = ["cluster", "volume", "site", "node"]
        in_sync = _g("drorch_replication_in_sync", "1 if the replica is in sync.", lab)
        oos = _g("drorch_replication_out_of_sync_bytes", "Bytes left to resync.", lab)
        lag = _g("drorch_replication_lag_bytes", "Bytes written but not yet replicated.", lab)
        role = _g("drorch_replication_state", "The replica's role, disk and connection "
                  "(value 1).", [*lab, "role", "disk", "connection"])  # fmt: skip
        for (vol, site), r in sorted(snap.replicas.items()):
            labels = [c.name, vol, site, r.node]
            in_sync.add_metric(labels, 1.0 if r.in_sync else 0.0)
            oos.add_metric(labels, r.out_of_sync_bytes)
            lag.add_metric(labels, r.lag_bytes)
            role.add_metric([*labels, r.role, r.disk, r.connection], 1.0)
        slack = _g("drorch_watchdog_slack_seconds", "lease_timeout - (watchdog_timeout + "
                   "margin): how much sooner a site fences itself than its lease ends.",
                   ["cluster"])  # fmt: skip
        f = c.fencing
        slack.add_metric([c.name], c.quorum.lease_timeout - f.watchdog_timeout - f.margin)
        yield from (epoch, held, outdated, in_sync, oos, lag, role, slack)


def registry(state_dir: Path, clusters: list[ClusterSource] | None = None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(DrillCollector(state_dir, clusters))
    return reg


def exposition(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)


def write_textfile(path: Path, data: bytes) -> None:
    """Atomically (temp file + rename in the same folder), as the textfile collector
    requires: it must never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
