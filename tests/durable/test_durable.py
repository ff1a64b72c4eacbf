"""drorch.durable: short writes are completed, and a fault at any step before the
rename leaves the old file exactly as it was (no temporary file left behind)."""

from __future__ import annotations

import dataclasses
import errno
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from drorch import durable
from drorch.durable import FileOps, temp_path, write_atomic


class Recorder:
    """Real system calls, recorded; `fail_at` makes the named call raise EIO."""

    def __init__(self, fail_at: str = "", short: int = 0) -> None:
        self.calls: list[str] = []
        self.fail_at = fail_at
        self.short = short  # cap every write at this many bytes (0: no cap)
        self.synced: list[int] = []

    def _maybe_fail(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_at:
            raise OSError(errno.EIO, f"injected failure of {name}")

    def ops(self) -> FileOps:
        def open_(path: str, flags: int, mode: int) -> int:
            self._maybe_fail("open_dir" if flags & os.O_DIRECTORY else "open")
            return os.open(path, flags, mode)

        def write(fd: int, view: memoryview) -> int:
            self._maybe_fail("write")
            return os.write(fd, view[: self.short] if self.short else view)

        def fsync(fd: int) -> None:
            self._maybe_fail("fsync_dir" if self.calls[-1] == "open_dir" else "fsync")
            os.fsync(fd)
            self.synced.append(fd)

        def replace(src: str, dst: str) -> None:
            self._maybe_fail("replace")
            os.replace(src, dst)

        return FileOps(open=open_, write=write, fsync=fsync, replace=replace)


def test_write_atomic_makes_every_step_in_order(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    rec = Recorder()
    write_atomic(target, b"new", ops=rec.ops())
    assert target.read_bytes() == b"new"
    assert oct(target.stat().st_mode & 0o777) == oct(0o600)
    assert rec.calls == ["open", "write", "fsync", "replace", "open_dir", "fsync_dir"]
    assert not temp_path(target).exists()


def test_short_writes_are_continued_until_every_byte_is_in(tmp_path: Path) -> None:
    target = tmp_path / "meta"
    data = bytes(range(256)) * 40  # 10240 bytes
    rec = Recorder(short=7)
    write_atomic(target, data, ops=rec.ops())
    assert target.read_bytes() == data
    assert rec.calls.count("write") == -(-len(data) // 7)


def test_a_write_that_moves_nothing_is_an_error_not_a_loop(tmp_path: Path) -> None:
    target = tmp_path / "meta"
    target.write_bytes(b"old")
    ops = dataclasses.replace(durable.OS_OPS, write=lambda fd, view: 0)
    with pytest.raises(OSError, match="moved 0 bytes"):
        write_atomic(target, b"new", ops=ops)
    assert target.read_bytes() == b"old"
    assert not temp_path(target).exists()


@pytest.mark.parametrize("step", ["open", "write", "fsync", "replace"])
def test_a_fault_before_the_rename_leaves_the_old_file_intact(tmp_path: Path, step: str) -> None:
    target = tmp_path / "epoch"
    target.write_bytes(b"7\n")
    rec = Recorder(fail_at=step)
    with pytest.raises(OSError, match=f"injected failure of {step}"):
        write_atomic(target, b"8\n", ops=rec.ops())
    assert target.read_bytes() == b"7\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch"]  # no temp file left


def test_a_fault_syncing_the_folder_is_still_raised(tmp_path: Path) -> None:
    target = tmp_path / "epoch"
    target.write_bytes(b"7\n")
    rec = Recorder(fail_at="fsync_dir")
    with pytest.raises(OSError, match="fsync_dir"):
        write_atomic(target, b"8\n", ops=rec.ops())
    # the rename happened, but the caller was told it is not known to be durable
    assert target.read_bytes() == b"8\n"


def test_a_crash_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    """kill -9 of a real process inside the write loop: old content, and the next
    write_atomic replaces the stale temporary file."""
    target = tmp_path / "state"
    target.write_bytes(b"old state")
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from drorch import durable\n"
        "def write(fd, view):\n"
        "    n = os.write(fd, view[:3])\n"
        "    os.kill(os.getpid(), 9)\n"
        "    return n\n"
        "ops = durable.FileOps(write=write)\n"
        "durable.write_atomic(Path(sys.argv[1]), b'new state, longer', ops=ops)\n"
    )
    proc = subprocess.run(["python3", "-c", script, str(target)], timeout=30, check=False)
    assert proc.returncode == -9
    assert target.read_bytes() == b"old state"
    assert temp_path(target).read_bytes() == b"new"  # the torn temp file, never renamed
    write_atomic(target, b"next")
    assert target.read_bytes() == b"next" and not temp_path(target).exists()


def test_pwrite_all_continues_short_positional_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bitmap"
    path.write_bytes(bytes(32))
    real: Callable[[int, memoryview, int], int] = os.pwrite
    calls = []

    def short(fd: int, view: memoryview, offset: int) -> int:
        calls.append(offset)
        return real(fd, view[:5], offset)

    monkeypatch.setattr(durable.os, "pwrite", short)
    fd = os.open(path, os.O_RDWR)
    try:
        durable.pwrite_all(fd, b"abcdefghijkl", 10)
    finally:
        os.close(fd)
    assert path.read_bytes()[10:22] == b"abcdefghijkl"
    assert calls == [10, 15, 20]


def test_shell_form_replaces_durably_and_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "r0.epoch"
    argv = durable.shell_write_command(str(target), "12")
    assert subprocess.run(argv, timeout=30, check=False).returncode == 0
    assert target.read_text() == "12\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["r0.epoch"]
    # the target is a directory: mv fails, the temporary file is removed, exit 1
    blocked = tmp_path / "blocked.epoch"
    blocked.mkdir()
    (blocked / "keep").write_text("x")
    argv = durable.shell_write_command(str(blocked / ".." / "blocked.epoch"), "13")
    out = subprocess.run(argv, timeout=30, check=False, capture_output=True, text=True)
    assert out.returncode == 1
    assert (blocked / "keep").read_text() == "x"
    assert not (tmp_path / ".blocked.epoch.tmp").exists()
