"""Drill fixtures: small clusters built from YAML text, a FakeClock at a known time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from drorch.drill.schedule import DrillRef, refs_of
from drorch.model.loader import parse_cluster_text
from drorch.model.types import Cluster


def cluster_yaml(name: str, sites: tuple[str, str] = ("A", "B"), drills: str = "") -> str:
    a, b = sites
    return f"""\
cluster: {name}
primary_site: {a}
sites:
  {a}: {{nodes: [{{name: {name}-{a.lower()}1, address: local}}]}}
  {b}: {{nodes: [{{name: {name}-{b.lower()}1, address: local}}]}}
hypervisor: {{driver: sim}}
drills:
{drills or f"  - {{name: weekly, kind: live, schedule: '0 3 * * sun', target: {b}}}"}
"""


def make_cluster(name: str, sites: tuple[str, str] = ("A", "B"), drills: str = "") -> Cluster:
    cluster, reports = parse_cluster_text(cluster_yaml(name, sites, drills), f"{name}.yaml")
    assert not [r for r in reports if r.severity.value == "error"], reports
    return cluster


def make_refs(name: str, sites: tuple[str, str] = ("A", "B"), drills: str = "") -> list[DrillRef]:
    return refs_of(Path(f"/configs/{name}.yaml"), make_cluster(name, sites, drills))


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()
