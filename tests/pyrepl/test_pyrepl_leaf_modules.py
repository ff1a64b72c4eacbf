"""pyrepl's leaf modules import nothing else of pyrepl (so they cannot join a cycle):
its errors and its one accept loop."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PYREPL = Path(__file__).resolve().parents[2] / "drorch" / "replication" / "pyrepl"
LEAVES = ["errors.py", "listener.py", "shipping.py"]


def pyrepl_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [n for n in names if n.startswith("drorch.replication.pyrepl")]
    return found


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaf_imports_nothing_of_pyrepl(leaf: str) -> None:
    assert pyrepl_imports((PYREPL / leaf).read_text()) == []


def test_the_check_sees_a_pyrepl_import() -> None:
    assert pyrepl_imports("from drorch.replication.pyrepl import wire\n") != []
    assert pyrepl_imports("import drorch.replication.pyrepl.engine\n") != []


def test_every_accept_loop_is_the_listener() -> None:
    """control.py, link.py and nbd_server.py accept only through listener.Acceptor."""
    for name in ("control.py", "link.py", "nbd_server.py"):
        assert ".accept()" not in (PYREPL / name).read_text(), name
    assert ".accept()" in (PYREPL / "listener.py").read_text()
