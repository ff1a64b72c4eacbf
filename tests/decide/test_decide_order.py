"""Start order is bottom-up, stop order top-down; ties keep config order."""

from __future__ import annotations

import pytest

from drorch.decide.order import DependencyCycle, dependents, start_order, stop_order
from drorch.model.types import VM, Cluster, Node, Service, Site
from tests.decide.conftest import cluster


def names(items: list[VM | Service]) -> list[str]:
    return [r.name for r in items]


def test_start_and_stop_order() -> None:
    c = cluster()
    assert names(start_order(c)) == ["db", "web", "proxy", "frontend"]
    assert names(stop_order(c)) == ["frontend", "proxy", "web", "db"]
    assert names(start_order(c, ["frontend", "db"])) == ["db", "frontend"]
    assert dependents(c, "db") == ["proxy"]


def test_a_cycle_is_named_not_looped_on() -> None:
    site = Site("A", (Node("a1"),))
    c = Cluster("x", (site, Site("B", (Node("b1"),))), "A",
                services=(Service("p", "true", "true", depends_on=("q",)),
                          Service("q", "true", "true", depends_on=("p",))))  # fmt: skip
    with pytest.raises(DependencyCycle, match="dependency cycle among: p, q"):
        start_order(c)


def test_long_chains_and_layers() -> None:
    chain = tuple(
        Service(f"s{i}", "true", "true", depends_on=(f"s{i - 1}",) if i else ())
        for i in range(3000)
    )
    site = Site("A", (Node("a1"),))
    c = Cluster("x", (site, Site("B", (Node("b1"),))), "A", services=tuple(reversed(chain)))
    assert names(start_order(c))[:3] == ["s0", "s1", "s2"]  # no recursion limit
    assert names(stop_order(c))[0] == "s2999"
