"""decide/ is pure: it imports only drorch.model and the standard library, no I/O modules."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import drorch.decide

FORBIDDEN = {"socket", "subprocess", "time", "paramiko", "libvirt", "tenacity"}
DECIDE_DIR = Path(drorch.decide.__file__).parent


def decide_modules() -> list[str]:
    return sorted(f"drorch.decide.{m.name}" for m in pkgutil.iter_modules([str(DECIDE_DIR)]))


def imported_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_there_are_decide_modules_to_check() -> None:
    assert {"drorch.decide.plan", "drorch.decide.order", "drorch.decide.snapshot"} <= set(
        decide_modules()
    )


def test_no_decide_module_imports_io_modules_directly() -> None:
    offenders = {}
    for path in sorted(DECIDE_DIR.glob("*.py")):
        names = imported_names(path)
        bad = {n for n in names if n.split(".")[0] in FORBIDDEN}
        outside = {
            n
            for n in names
            if n.split(".")[0] not in sys.stdlib_module_names
            and not n.startswith(("drorch.model", "drorch.decide", "__future__"))
        }
        if bad or outside:
            offenders[path.name] = sorted(bad | outside)
    assert offenders == {}


def test_importing_decide_pulls_in_nothing_but_model_and_stdlib() -> None:
    """In a fresh interpreter, every module loaded by importing decide/ (transitively)."""
    script = (
        "import importlib, json, sys\n"
        "before = set(sys.modules)\n"
        f"for m in {decide_modules()!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(out.stdout)
    forbidden = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    foreign = [
        m
        for m in loaded
        if m.split(".")[0] not in sys.stdlib_module_names
        and m != "drorch"
        and not m.startswith(("drorch.model", "drorch.decide"))
    ]
    assert forbidden == []
    assert foreign == []
