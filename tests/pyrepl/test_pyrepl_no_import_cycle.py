"""Issue 10 §4: pyrepl's modules form no import cycle at run time (imports under
TYPE_CHECKING are for annotations only and do not count)."""

from __future__ import annotations

import grimp


def test_pyrepl_has_no_runtime_import_cycle() -> None:
    graph = grimp.build_graph("drorch", exclude_type_checking_imports=True)
    modules = sorted(m for m in graph.modules if m.startswith("drorch.replication.pyrepl."))
    cycles = []
    for m in modules:
        for other in graph.find_modules_directly_imported_by(m):
            if other.startswith("drorch.replication.pyrepl.") and graph.chain_exists(
                importer=other, imported=m
            ):
                cycles.append((m, other))
    assert cycles == []
