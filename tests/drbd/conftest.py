"""Fixtures of the DRBD driver tests: recorded-format drbdsetup/drbdadm output files."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
