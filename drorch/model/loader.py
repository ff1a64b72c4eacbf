"""Load and validate a cluster config file: schema, then semantic rules, then timing.

    cluster = load_cluster("cluster.yaml")          # raises ConfigError with every error
    cluster, warnings = load_cluster_with_warnings("cluster.yaml")

Every problem is `FILE:LINE:COL: CODE: message`; all of them are found in one pass.
"""

from __future__ import annotations

from pathlib import Path

from drorch.model import rules, timing
from drorch.model.fields import Context, Where
from drorch.model.reports import ConfigError, Position, ReportItem, Severity
from drorch.model.schema import parse_cluster
from drorch.model.source import Located, gc_paused, load_located, parse_located
from drorch.model.types import Cluster


def check_located(root: Located, file: str) -> tuple[Cluster | None, list[ReportItem]]:
    """Every report (errors and warnings) for a parsed tree, and the model if any."""
    ctx = Context(Where(file=file))
    ctx.where.record((), Position(file, 1, 1))
    with gc_paused():
        cluster = parse_cluster(root, ctx)
        if cluster is not None:
            rules.check_all(cluster, ctx)
            timing.check_all(cluster, ctx)
    return cluster, ctx.reports


def _finish(cluster: Cluster | None, reports: list[ReportItem]) -> tuple[Cluster, list[ReportItem]]:
    errors = [r for r in reports if r.severity is Severity.ERROR]
    if errors or cluster is None:
        raise ConfigError(reports)
    warnings = [r for r in reports if r.severity is Severity.WARNING]
    return cluster, sorted(warnings, key=lambda r: (r.position or Position("", 0, 0), r.code))


def load_cluster_with_warnings(path: str | Path) -> tuple[Cluster, list[ReportItem]]:
    """The validated model and its warnings; ConfigError (errors and warnings) otherwise."""
    with gc_paused():  # one pause for the tree's building and checking (see gc_paused)
        return _finish(*check_located(load_located(path), str(path)))


def load_cluster(path: str | Path) -> Cluster:
    """The validated model; raises ConfigError carrying every report when any is an error."""
    return load_cluster_with_warnings(path)[0]


def parse_cluster_text(text: str, file: str = "<string>") -> tuple[Cluster, list[ReportItem]]:
    """Like load_cluster_with_warnings, for YAML already in memory (tests, stdin)."""
    with gc_paused():
        return _finish(*check_located(parse_located(text, file), file))
