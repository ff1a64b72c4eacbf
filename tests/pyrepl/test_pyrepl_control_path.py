"""A local replica's control socket whose natural path does not fit in sun_path (107
bytes) gets a short, private stand-in, the same for the daemon and every client; a real
daemon is started and asked through it."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from drorch.replication.base import ReplicationError
from drorch.replication.pyrepl.control_path import (
    SUN_PATH_MAX,
    replica_control_path,
    short_control_path,
)


def test_a_path_that_fits_is_kept(tmp_path: Path) -> None:
    p = Path("/var/lib/drorch/.drorch-state/pyrepl/vol@a1.ctl")
    assert short_control_path(p, tmp_path) == p


def test_a_long_path_gets_a_stable_private_stand_in() -> None:
    long = Path("/" + "d" * 120) / "vol@a1.ctl"
    with tempfile.TemporaryDirectory(prefix="cp", dir="/tmp") as tmp:
        short = short_control_path(long, Path(tmp))
        assert short == short_control_path(long, Path(tmp))  # the same for every caller
        assert short != short_control_path(Path("/" + "d" * 120) / "vol@b1.ctl", Path(tmp))
        assert len(os.fsencode(str(short))) <= SUN_PATH_MAX
        folder = short.parent
        assert folder.name == f"drorch-{os.getuid()}"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_stand_in_that_is_still_too_long_is_refused_clearly(tmp_path: Path) -> None:
    deep = tmp_path / ("t" * 90)
    deep.mkdir()
    with pytest.raises(ReplicationError, match="and so is its stand-in"):
        short_control_path(Path("/" + "d" * 120) / "v.ctl", deep)


def test_a_folder_open_to_others_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / f"drorch-{os.getuid()}"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    with pytest.raises(ReplicationError, match="not a private folder of this user"):
        short_control_path(Path("/" + "d" * 120) / "v.ctl", tmp_path)


def test_a_real_daemon_is_reached_through_the_stand_in(tmp_path: Path) -> None:
    """The driver's own paths, under a base folder deep enough to overflow sun_path."""
    from drorch.clock import SystemClock
    from drorch.environment import Environment
    from drorch.model.types import Driver, Node, ReplicationMode, Volume
    from drorch.replication.pyrepl.driver import PyreplReplicator
    from tests.ports import free_port_block

    base = tmp_path / ("deep" * 20)
    base.mkdir()
    natural = base / ".drorch-state" / "pyrepl" / "vol@n1.ctl"
    assert len(os.fsencode(str(natural))) > SUN_PATH_MAX
    vol = Volume(name="vol", driver=Driver.PYREPL, mode=ReplicationMode.SYNC,
                 size=4 * 1024 * 1024, port=free_port_block(),
                 paths={"n1": str(base / "n1.img"), "n2": str(base / "n2.img")})  # fmt: skip
    rep = PyreplReplicator(vol, Node("n1"), Environment(clock=SystemClock(), base_dir=base))
    assert rep.control == replica_control_path(base, "vol", "n1")
    assert rep.control.parent == Path(tempfile.gettempdir()) / f"drorch-{os.getuid()}"
    rep.up()
    try:
        assert rep.status().name == "vol"
    finally:
        rep.down()
