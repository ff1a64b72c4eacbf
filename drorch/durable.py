"""Durable state files: one way to replace a small file so a crash leaves old or new.

Fencing state (epochs, disk states, generation ids, the witness's leases and outdate
records) must survive a crash or a power cut exactly as it was acknowledged. Every
such file is replaced by `write_atomic()`:

1. the bytes go to a temporary file beside the target (same folder, so the rename
   cannot cross file systems), written in a loop until every byte is in (a short
   write is continued, never ignored; a write that moves nothing is an error);
2. the temporary file is fsynced, then closed;
3. it is renamed over the target (atomic on POSIX file systems);
4. the folder is fsynced, so the rename itself is durable.

A failure before step 3 removes the temporary file and leaves the old file untouched;
a failure at step 4 is still raised (the new content is in place, but not known to be
durable, so nobody may act on it yet). `FileOps` lets a test inject a short or failing
write, fsync or rename at any step.

Files written in place (a bitmap, an activity log) use `pwrite_all()`, the same loop
for positional writes. `shell_write_command()` is the same recipe as a shell command
for a node reached only through a command runner (DRBD's epoch file): the shell's
printf completes short writes itself and coreutils `sync FILE` is fsync(2).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileOps:
    """The system calls `write_atomic` makes (tests replace one to inject a fault)."""

    open: Callable[[str, int, int], int] = os.open
    write: Callable[[int, memoryview], int] = os.write
    fsync: Callable[[int], None] = os.fsync
    close: Callable[[int], None] = os.close
    replace: Callable[[str, str], None] = os.replace
    unlink: Callable[[str], None] = os.unlink


OS_OPS = FileOps()


def temp_path(path: Path) -> Path:
    """Where `write_atomic` stages `path` (a hidden file in the same folder)."""
    return path.with_name(f".{path.name}.tmp")


def write_all(fd: int, data: bytes | bytearray | memoryview, ops: FileOps = OS_OPS) -> None:
    """Write every byte of `data` at the descriptor's position, continuing short writes."""
    view = memoryview(data).cast("B")
    while view:
        written = ops.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, f"write moved {written} bytes with {len(view)} to go")
        view = view[written:]


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """os.pwrite until every byte of `data` is at `offset` (short writes continued)."""
    view = memoryview(data).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.EIO, f"pwrite moved {written} bytes with {len(view)} to go")
        view = view[written:]
        offset += written


def fsync_folder(folder: Path, ops: FileOps = OS_OPS) -> None:
    fd = ops.open(str(folder), os.O_RDONLY | os.O_DIRECTORY, 0)
    try:
        ops.fsync(fd)
    finally:
        ops.close(fd)


def write_atomic(
    path: Path, data: bytes | bytearray | memoryview, *, mode: int = 0o600, ops: FileOps = OS_OPS
) -> None:
    """Replace `path` with `data`, atomically and durably (see the module docstring).
    OSError from any step; before the rename the old file is left as it was."""
    tmp = temp_path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    try:
        fd = ops.open(str(tmp), flags, mode)
        try:
            write_all(fd, data, ops)
            ops.fsync(fd)
        finally:
            ops.close(fd)
        ops.replace(str(tmp), str(path))
    except BaseException:
        with contextlib.suppress(OSError):
            ops.unlink(str(tmp))
        raise
    fsync_folder(path.parent, ops)


def write_text_atomic(path: Path, text: str, *, mode: int = 0o600, ops: FileOps = OS_OPS) -> None:
    write_atomic(path, text.encode("utf-8"), mode=mode, ops=ops)


# $1 folder, $2 target, $3 content (a line): the same four steps as write_atomic.
SHELL_WRITE = (
    'mkdir -p "$1" && t="$1/.${2##*/}.tmp" && printf "%s\\n" "$3" > "$t"'
    ' && sync "$t" && mv -fT "$t" "$2" && sync "$1" || { rm -f "$t"; exit 1; }'
)


def shell_write_command(path: str, line: str) -> list[str]:
    """argv that replaces `path` with `line` + newline, durably, on a node reached
    through a command runner (needs sh, mkdir, printf, and coreutils mv -T and sync)."""
    folder = path.rpartition("/")[0] or "."
    return ["sh", "-c", SHELL_WRITE, "sh", folder, path, line]
