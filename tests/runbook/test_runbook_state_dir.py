"""The one state directory: $DRORCH_STATE_DIR, else /var/lib/drorch as root, else
$XDG_STATE_HOME/drorch or ~/.local/state/drorch."""

from __future__ import annotations

from pathlib import Path

import pytest

from drorch.environment import Environment
from drorch.statedir import default_state_dir


@pytest.mark.parametrize(
    ("environ", "euid", "expected"),
    [
        ({"DRORCH_STATE_DIR": "/srv/dr"}, 0, "/srv/dr"),
        ({"DRORCH_STATE_DIR": "/srv/dr"}, 1000, "/srv/dr"),
        ({}, 0, "/var/lib/drorch"),
        ({"XDG_STATE_HOME": "/x"}, 0, "/var/lib/drorch"),
        ({}, 1000, "/home/op/.local/state/drorch"),
        ({"XDG_STATE_HOME": "/x/state"}, 1000, "/x/state/drorch"),
        ({"DRORCH_STATE_DIR": ""}, 1000, "/home/op/.local/state/drorch"),
    ],
)
def test_default_state_dir(environ: dict[str, str], euid: int, expected: str) -> None:
    assert default_state_dir(environ, euid, Path("/home/op")) == Path(expected)


def test_environment_uses_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DRORCH_STATE_DIR", str(tmp_path))
    assert Environment().state_dir == tmp_path
