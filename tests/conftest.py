"""Suite-wide fixtures. Area-specific fixtures live in each tests/<area>/conftest.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


LAB_TESTS = "tests/virt_lab/"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist (`make test` runs 2 workers with --dist loadgroup), every test
    under tests/virt_lab/ goes to one worker: the lab tests share one lab (namespaces,
    libvirtds and guests brought up once per worker session, under a machine-wide lock)
    and on two workers the second waits for the first worker's whole session to end.

    By path, not by the `lab` mark: xdist's own grouping (an `xdist_group` mark, which it
    appends to the node id) does nothing under pytest >= 9, whose node ids are read-only,
    and it cost every CI run ~500 s. The group is the largest unit, so xdist hands it out
    first; the directory's other tests are fast."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class LabOnOneWorker(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(LAB_TESTS):
                return "lab"
            return str(super()._split_scope(nodeid))

    return LabOnOneWorker(config, log)


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def _private_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes to the machine's state directory (/var/lib/drorch as root): every
    Environment built without an explicit state_dir uses one under the test's tmp_path."""
    monkeypatch.setenv("DRORCH_STATE_DIR", str(tmp_path / "drorch-state"))
