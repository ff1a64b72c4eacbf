"""Reading a config file (the cluster file, quorumd's, a runbook) without ever hanging
or reading without bound: a regular file only, at most `max_bytes()`, UTF-8 text with
no NUL byte. Every refusal is a `ConfigError` at `FILE:1:1` (`file`, `file-too-large`),
or at the offending byte's line and column.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from drorch.model.reports import ConfigError, Position, ReportItem

MAX_BYTES = 4 * 1024 * 1024  # a cluster file is kilobytes; $DRORCH_CONFIG_MAX_BYTES raises it


def max_bytes() -> int:
    raw = os.environ.get("DRORCH_CONFIG_MAX_BYTES", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else MAX_BYTES


def offset_position(file: str, text: str, offset: int) -> Position:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Position(file, line, col)


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _read_at_most(fd: int, n: int) -> bytes:
    """Up to `n` bytes (a file that grows while it is read is cut there)."""
    os.set_blocking(fd, True)
    chunks: list[bytes] = []
    got = 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_config_bytes(path: str | Path, what: str = "a cluster file") -> bytes:
    """The bytes of a config file, never blocking and never unbounded: a regular file
    only (a named pipe, a directory, a device or a socket is refused at once, before any
    read: a FIFO would wait for a writer, /dev/zero never ends), at most `max_bytes()`
    (refused from its size, before reading it). ConfigError(`file` / `file-too-large`)
    otherwise, at the file's 1:1."""
    p = Path(path)
    where = Position(str(p), 1, 1)
    limit = max_bytes()
    try:
        # O_NONBLOCK: opening a FIFO for reading must not wait for a writer
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise ConfigError(
            [ReportItem("file", f"cannot read: {exc.strerror or exc}", where)]
        ) from exc
    try:
        st = os.fstat(fd)
        kind = next((name for test, name in _KINDS if test(st.st_mode)), None)
        if kind is not None or not stat.S_ISREG(st.st_mode):
            raise ConfigError(
                [
                    ReportItem(
                        "file",
                        f"cannot read: {kind or 'not a regular file'}, not {what}"
                        " (drorch reads a config only from a regular file)",
                        where,
                    )
                ]
            )
        data = _read_at_most(fd, limit + 1) if st.st_size <= limit else b""
    except OSError as exc:
        raise ConfigError(
            [ReportItem("file", f"cannot read: {exc.strerror or exc}", where)]
        ) from exc
    finally:
        os.close(fd)
    if st.st_size > limit or len(data) > limit:
        size = f"{st.st_size:,}" if st.st_size > limit else f"at least {len(data):,}"
        raise ConfigError(
            [
                ReportItem(
                    "file-too-large",
                    f"{size} bytes, larger than the {limit:,} allowed; {what} is kilobytes"
                    " (raise $DRORCH_CONFIG_MAX_BYTES if this one really is that big)",
                    where,
                )
            ]
        )
    return data


def read_config_text(path: str | Path, what: str = "a cluster file") -> str:
    """`read_config_bytes`, decoded: UTF-8 with no NUL byte, else ConfigError(`file`)
    at the line and column of the first bad byte."""
    p = Path(path)
    data = read_config_bytes(p, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8", errors="replace")
        raise ConfigError(
            [
                ReportItem(
                    "file",
                    f"not UTF-8 text (byte 0x{data[exc.start]:02x}): is this a binary file?",
                    offset_position(str(p), good, len(good)),
                )
            ]
        ) from exc
    if "\0" in text:
        at = text.index("\0")
        raise ConfigError(
            [
                ReportItem(
                    "file",
                    "contains a NUL byte: not a text file",
                    offset_position(str(p), text, at),
                )
            ]
        )
    return text
