"""The import-linter contracts in pyproject.toml ([tool.importlinter]) hold on drorch, and
they break on a tree that violates them (so `make lint` can fail)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(LINT), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def contract_modules() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    names: set[str] = set()
    for c in config["contracts"]:
        for layer in c.get("layers", []):
            names.update(part.strip() for part in layer.replace("|", ":").split(":"))
        names.update(c.get("source_modules", []))
        names.update(m for m in c.get("forbidden_modules", []) if m.startswith("drorch"))
    return names


def fake_drorch(root: Path, importer: str, imported: str) -> Path:
    """A drorch of empty modules named in the contracts, where `importer` imports `imported`."""
    for name in contract_modules() | {"drorch"}:
        pkg = root.joinpath(*name.split("."))
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text("")
    bad = root.joinpath(*importer.split(".")) / "bad.py"
    bad.write_text(f"import {imported}\n")
    return root


def test_the_contracts_hold_on_drorch() -> None:
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


LAYERS = "layers: model <- decide <- runbook/agent <- drill <- cli"


@pytest.mark.parametrize(
    ("importer", "imported", "contract"),
    [
        ("drorch.model", "drorch.decide", LAYERS),
        ("drorch.decide", "drorch.runbook", LAYERS),
        ("drorch.agent", "drorch.cli", LAYERS),
        ("drorch.runbook", "drorch.drill", LAYERS),
        ("drorch.decide", "drorch.observe", "decide is pure: only model and the standard library"),
        ("drorch.decide", "yaml", "decide is pure: only model and the standard library"),
        ("drorch.model", "drorch.virt", "model imports no other part of drorch"),
        ("drorch.replication", "drorch.cli", "only the command line"),
    ],
)
def test_a_violation_breaks_its_contract(
    tmp_path: Path, importer: str, imported: str, contract: str
) -> None:
    root = fake_drorch(tmp_path / "src", importer, imported)
    result = lint(tmp_path, pythonpath=root)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [ln for ln in result.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(ln.startswith(contract) for ln in broken), result.stdout
