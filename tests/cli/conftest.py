"""CLI fixtures: a private copy of the lab config (its sim state lands in tmp_path)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def lab_config(tmp_path: Path, repo_root: Path) -> Path:
    target = tmp_path / "sim.yaml"
    shutil.copy(repo_root / "lab" / "sim.yaml", target)
    shutil.copytree(repo_root / "lab" / "xml", tmp_path / "xml")  # its VMs' domain XML
    return target


def open_handover(config: Path, volume: str, source: str = "a1", target: str = "b1") -> None:
    """What `drorch migrate` does before a live move: let `target` be primary beside
    `source` (sync) and promote it, through the config's own (simulated) replicators."""
    from drorch.envbuild import build_environment
    from drorch.model.loader import load_cluster

    env = build_environment(load_cluster(config), config.parent)
    try:
        env.replicators[(volume, source)].allow_two_primaries()
        env.replicators[(volume, target)].promote()
    finally:
        env.close()
