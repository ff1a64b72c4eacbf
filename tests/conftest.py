"""Suite-wide fixtures. Area-specific fixtures live in each tests/<area>/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test` runs 2 workers with --dist loadgroup), every test
    marked `lab` goes to one worker: they share one lab (its namespaces, libvirtds and
    guests are brought up once per worker session) and would only queue on its lock."""
    for item in items:
        if item.get_closest_marker("lab") is not None:
            item.add_marker(pytest.mark.xdist_group("lab"))


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes to the machine's state directory (/var/lib/drorch as root): every
    Environment built without an explicit state_dir uses one under the test's tmp_path."""
    monkeypatch.setenv("DRORCH_STATE_DIR", str(tmp_path / "drorch-state"))
