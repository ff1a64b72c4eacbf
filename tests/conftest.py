"""Suite-wide fixtures. Area-specific fixtures live in each tests/<area>/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes to the machine's state directory (/var/lib/drorch as root): every
    Environment built without an explicit state_dir uses one under the test's tmp_path."""
    monkeypatch.setenv("DRORCH_STATE_DIR", str(tmp_path / "drorch-state"))
