"""CLI fixtures: a private copy of the lab config (its sim state lands in tmp_path)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def lab_config(tmp_path: Path, repo_root: Path) -> Path:
    target = tmp_path / "sim.yaml"
    shutil.copy(repo_root / "lab" / "sim.yaml", target)
    return target
