"""No import cycles between the modules the issue named (each command group in its own
module; the quorum client never imports its keeper): imports anywhere in a module count,
also the lazy ones inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imports(module: str) -> set[str]:
    path = ROOT / (module.replace(".", "/") + ".py")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("drorch.")}


def reaches(start: str, target: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module in seen or not (ROOT / (module.replace(".", "/") + ".py")).is_file():
            continue
        seen.add(module)
        found = imports(module)
        if target in found:
            return True
        todo += sorted(found)
    return False


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("drorch.cli.drbd_cmd", "drorch.cli.drbd_ops_cmd"),
        ("drorch.cli.drbd_cmd", "drorch.cli.drbd_watch_cmd"),
        ("drorch.cli.vm_cmd", "drorch.cli.vm_migrate_cmd"),
        ("drorch.cli.vm_cmd", "drorch.cli.vm_power_cmd"),
        ("drorch.cli.vm_cmd", "drorch.cli.vm_xml_cmd"),
        ("drorch.quorum.keeper", "drorch.quorum.client"),
    ],
)
def test_one_way_only(a: str, b: str) -> None:
    assert reaches(a, b), f"{a} should use {b}"
    assert not reaches(b, a), f"{b} imports {a} back: a cycle"


def test_the_check_can_fail() -> None:
    assert reaches("drorch.cli.drbd_ops_cmd", "drorch.cli.drbd_common")
