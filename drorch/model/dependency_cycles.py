"""The dependency-cycle rule: VMs and services that wait for each other through
`depends_on` can never be started; each cycle is reported once, where it closes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from drorch.model.fields import Context
from drorch.model.types import VM, Service


def check_cycles(entries: Sequence[tuple[str, int, VM | Service]], ctx: Context) -> None:
    """Report each dependency cycle once, at the depends_on entry that closes it.

    A depth-first walk with its own stack, not recursion: a chain of thousands of
    dependencies must not raise RecursionError, and a recursive closure would make a
    reference cycle that keeps the whole walk (and the context) alive until the garbage
    collector runs."""
    index = {res.name: (key, i, res) for key, i, res in entries}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    reported: set[frozenset[str]] = set()
    path: list[str] = []  # the names on the current path, outermost first
    # for each name on the path: its config key and index, and its remaining depends_on
    open_deps: list[tuple[str, int, Iterator[tuple[int, str]]]] = []

    def enter(name: str) -> None:
        state[name] = 1
        path.append(name)
        key, i, res = index[name]
        open_deps.append((key, i, enumerate(res.depends_on)))

    for _, _, first in entries:
        if first.name in state:
            continue
        enter(first.name)
        while open_deps:
            key, i, deps = open_deps[-1]
            for j, dep in deps:
                if dep not in index:
                    continue
                if state.get(dep) == 1:
                    cycle = [*path[path.index(dep) :], dep]
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        ctx.error(
                            "dependency-cycle",
                            f"{' -> '.join(cycle)}: these resources wait for each other,"
                            " so none of them can be started",
                            ctx.where.at(key, i, "depends_on", j),
                        )
                elif dep not in state:
                    enter(dep)  # walk into dep; this name's other deps resume afterwards
                    break
            else:
                open_deps.pop()
                state[path.pop()] = 2
