"""The dependency-cycle rule walks with its own stack: it reports exactly what the
recursive walk it replaced reported (same cycles, same order, same positions), survives
chains far longer than Python's recursion limit, and leaves no reference cycle behind
(the recursive closure kept the whole context alive until a garbage collection)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from drorch.model.dependency_cycles import check_cycles
from drorch.model.fields import Context, Where
from drorch.model.loader import parse_cluster_text
from drorch.model.reports import Position
from drorch.model.types import Service

HEAD = (
    "cluster: c\nprimary_site: A\nsites:\n  A: {nodes: [{name: a1}]}\n  B: {nodes: [{name: b1}]}\n"
)


def recursive_check_cycles(
    entries: Sequence[tuple[str, int, Service]], ctx: Context
) -> None:  # the recursive walk check_cycles replaced, kept as the reference
    index = {res.name: (key, i, res) for key, i, res in entries}
    state: dict[str, int] = {}
    reported: set[frozenset[str]] = set()

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        stack.append(name)
        key, i, res = index[name]
        for j, dep in enumerate(res.depends_on):
            if dep not in index:
                continue
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    ctx.error(
                        "dependency-cycle",
                        f"{' -> '.join(cycle)}: these resources wait for each other,"
                        " so none of them can be started",
                        ctx.where.at(key, i, "depends_on", j),
                    )
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[name] = 2

    for _, _, res in entries:
        if res.name not in state:
            visit(res.name, [])


def _context(entries: Sequence[tuple[str, int, Service]]) -> Context:
    where = Where(file="f.yaml")
    for key, i, res in entries:
        for j, _ in enumerate(res.depends_on):
            where.record((key, i, "depends_on", j), Position("f.yaml", i + 1, j + 1))
    return Context(where)


NAMES = [f"r{i}" for i in range(7)]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(NAMES), st.lists(st.sampled_from([*NAMES, "gone"]), max_size=4)),
        max_size=9,
    )
)
def test_same_reports_as_the_recursive_walk(graph: list[tuple[str, list[str]]]) -> None:
    entries = [
        ("services", i, Service(name, "true", "true", depends_on=tuple(deps)))
        for i, (name, deps) in enumerate(graph)
    ]
    expected, got = _context(entries), _context(entries)
    recursive_check_cycles(entries, expected)
    check_cycles(entries, got)
    assert got.reports == expected.reports


def _chain(n: int, *, closed: bool) -> str:
    lines = [HEAD, "services:\n"]
    for i in range(n):
        dep = f"s{i + 1}" if i + 1 < n else ("s0" if closed else "")
        deps = f", depends_on: [{dep}]" if dep else ""
        lines.append(f"  - {{name: s{i}, start: 'true', stop: 'true'{deps}}}\n")
    return "".join(lines)


def test_a_chain_longer_than_the_recursion_limit() -> None:
    n = sys.getrecursionlimit() * 2
    cluster, _ = parse_cluster_text(_chain(n, closed=False), "chain.yaml")
    assert len(cluster.services) == n
    ctx = Context(Where(file="chain.yaml"))
    check_cycles([("services", i, s) for i, s in enumerate(cluster.services)], ctx)
    assert ctx.reports == []
    closed = [
        ("services", i, Service(f"s{i}", "t", "t", depends_on=(f"s{(i + 1) % n}",)))
        for i in range(n)
    ]
    ctx = Context(Where(file="chain.yaml"))
    check_cycles(closed, ctx)
    assert [r.code for r in ctx.reports] == ["dependency-cycle"]
    assert ctx.reports[0].message.startswith("s0 -> s1 -> s2 -> ")


def test_loading_leaves_no_garbage_cycles() -> None:
    text = _chain(50, closed=False)
    parse_cluster_text(text, "chain.yaml")
    gc.collect()
    collecting = gc.isenabled()
    gc.disable()
    try:
        parse_cluster_text(text, "chain.yaml")
        assert gc.collect() == 0, "loading left objects that only the cycle collector frees"
    finally:
        if collecting:
            gc.enable()
