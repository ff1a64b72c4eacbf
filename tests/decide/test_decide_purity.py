"""decide/ is pure: it imports only drorch.model and a listed set of standard-library
modules (data structures and typing; no os, sys, time, datetime, threading, io, pathlib,
socket, subprocess, random, logging), and calls no I/O or clock builtin (open, print,
input, eval, ...; no `.now()`/`.today()`). What a decision needs from the world comes in
the Snapshot."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import drorch.decide

# The only standard-library modules a decide/ module may import.
ALLOWED_STDLIB = frozenset(
    {
        "__future__", "abc", "bisect", "collections", "dataclasses", "enum", "fractions",
        "functools", "graphlib", "heapq", "itertools", "math", "operator", "re", "string",
        "textwrap", "types", "typing",
    }
)  # fmt: skip
# What those load in turn on CPython 3.11 (dataclasses -> inspect -> ast, dis, tokenize...).
IMPLIED_STDLIB = frozenset(
    {
        "_ast", "_opcode", "ast", "copy", "dis", "inspect", "linecache", "opcode", "token",
        "tokenize", "_typing", "_bisect", "_heapq", "_functools", "_collections", "_operator",
        "sre_compile", "sre_parse", "sre_constants", "_sre", "_string", "_weakrefset", "weakref",
    }
)  # fmt: skip
# Builtins that do I/O, read the clock or run code.
FORBIDDEN_CALLS = frozenset(
    {"open", "print", "input", "eval", "exec", "compile", "__import__", "breakpoint"}
)
CLOCK_METHODS = frozenset({"now", "utcnow", "today", "time", "monotonic", "sleep"})
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


def disallowed_imports(names: set[str]) -> set[str]:
    return {
        n
        for n in names
        if n.split(".")[0] not in ALLOWED_STDLIB
        and not n.startswith(("drorch.model.", "drorch.decide."))
        and n not in ("drorch.model", "drorch.decide")
    }


def forbidden_calls(path: Path) -> list[str]:
    """Calls of I/O builtins and of clock methods (`x.now()`, `time.monotonic()`)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in FORBIDDEN_CALLS:
            found.append(f"{path.name}:{node.lineno}: {f.id}()")
        elif isinstance(f, ast.Attribute) and f.attr in CLOCK_METHODS:
            found.append(f"{path.name}:{node.lineno}: .{f.attr}()")
    return found


def test_no_decide_module_imports_outside_the_allowed_list() -> None:
    offenders = {}
    for path in sorted(DECIDE_DIR.glob("*.py")):
        outside = disallowed_imports(imported_names(path))
        if outside:
            offenders[path.name] = sorted(outside)
    assert offenders == {}


def test_the_import_check_catches_what_it_must(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import os\nfrom datetime import datetime\nimport threading\nfrom pathlib import Path\n"
        "import yaml\nfrom drorch.observe import observe\nfrom collections import Counter\n"
        "from drorch.model.types import Cluster\n"
        "def f():\n    open('x')\n    print(datetime.now())\n    return time.monotonic()\n"
    )
    assert disallowed_imports(imported_names(bad)) == {
        "os", "datetime", "threading", "pathlib", "yaml", "drorch.observe",
    }  # fmt: skip
    assert sorted(forbidden_calls(bad)) == [
        "bad.py:10: open()", "bad.py:11: .now()", "bad.py:11: print()", "bad.py:12: .monotonic()",
    ]  # fmt: skip


def test_no_decide_module_calls_io_or_clock_builtins() -> None:
    found = [c for path in sorted(DECIDE_DIR.glob("*.py")) for c in forbidden_calls(path)]
    assert found == []


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
        if m.split(".")[0] not in ALLOWED_STDLIB | IMPLIED_STDLIB
        and m != "drorch"
        and not m.startswith(("drorch.model", "drorch.decide"))
    ]
    assert forbidden == []
    assert foreign == []
