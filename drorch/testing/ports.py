"""Free loopback ports for tests and the demo, handed out so two of them never collide.

The race this avoids: a test asks the kernel for a free port (`bind(("127.0.0.1", 0))`),
closes the probe, and starts a daemon that binds the port a moment later. In that moment
another test — in this process or in a concurrent pytest run in another worktree — may
be handed the same port, and any outgoing TCP connection may take it as its source port,
because the kernel picks both from the ephemeral range. The daemon then fails with
"Address already in use".

So ports come from a pool *below* the kernel's ephemeral range (outgoing connections
never take those), and one machine-wide cursor, advanced under `flock`, walks the pool:
every reservation on the machine gets the next ports, and a port is handed out again only
after the cursor has gone round the whole pool (about 12,000 reservations later). Each
candidate is probed with a bind before it is handed out, so a port still held by a
long-lived daemon is skipped. Nothing has to be held or handed over, so a shell script
can use it too: `python -m drorch.testing.ports [COUNT] [--span N]` prints COUNT base
ports, each the first of N consecutive free ones.

The pool is `DRORCH_TEST_PORTS=LOW-HIGH` when set, else the 12,000 ports below the
ephemeral range's start (read from /proc; 20768-32767 with Linux's default range). The
cursor is `/tmp/drorch-test-ports.cursor` (whatever TMPDIR says), or DRORCH_TEST_PORTS_CURSOR.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import socket
import tempfile
import threading
from pathlib import Path

_POOL_SIZE = 12_000
_LOWEST = 1024
_HOST = "127.0.0.1"
_lock = threading.Lock()  # the flock is per open file; this guards threads of one process


def pool() -> range:
    """The ports reservations come from: DRORCH_TEST_PORTS, else below the ephemeral range."""
    spec = os.environ.get("DRORCH_TEST_PORTS", "")
    if spec:
        low_text, _, high_text = spec.partition("-")
        low, high = int(low_text), int(high_text)
        if not _LOWEST <= low < high <= 65535:
            raise ValueError(f"DRORCH_TEST_PORTS={spec!r}: want LOW-HIGH within 1024-65535")
        return range(low, high + 1)
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        ephemeral_low = int(text.split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    high = max(ephemeral_low - 1, _LOWEST + _POOL_SIZE)
    return range(max(_LOWEST, high - _POOL_SIZE + 1), high + 1)


def _cursor_file() -> Path:
    """The machine-wide cursor; DRORCH_TEST_PORTS_CURSOR names another (a private one)."""
    override = os.environ.get("DRORCH_TEST_PORTS_CURSOR", "")
    if override:
        return Path(override)
    # /tmp, not $TMPDIR: tests and the demo set TMPDIR to private folders, and the cursor
    # must be the same for every process on the machine
    folder = Path("/tmp") if os.access("/tmp", os.W_OK) else Path(tempfile.gettempdir())
    return folder / "drorch-test-ports.cursor"


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((_HOST, port))
        except OSError:
            return False
    return True


def _advance(ports: range, span: int, start: int) -> tuple[int, int]:
    """(base, next cursor): the first base at or after `start` whose span is free."""
    size = len(ports) - span + 1
    offset = (start - ports.start) % size
    for _ in range(size):  # bounded: at most one lap of the pool
        base = ports.start + offset
        offset = (offset + span) % size
        if all(_is_free(base + i) for i in range(span)):
            return base, ports.start + offset
    raise RuntimeError(f"no {span} consecutive free ports in {ports.start}-{ports.stop - 1}")


def reserve(span: int = 1) -> int:
    """The first of `span` consecutive loopback ports that are free now and that no other
    reservation on this machine gets until the pool has gone round (see the module doc)."""
    ports = pool()
    if not 1 <= span <= len(ports):
        raise ValueError(f"span {span} outside 1-{len(ports)}")
    with _lock:
        path = _cursor_file()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:  # no shared cursor (read-only tmp): a random start, still probed
            return _advance(ports, span, random.randrange(ports.start, ports.stop))[0]
        with os.fdopen(fd, "r+") as cursor:
            fcntl.flock(cursor, fcntl.LOCK_EX)  # released when the file closes
            text = cursor.read().strip()
            start = int(text) if text.isdigit() else random.randrange(ports.start, ports.stop)
            base, following = _advance(ports, span, start)
            cursor.seek(0)
            cursor.truncate()
            cursor.write(str(following))
            return base


def reserve_many(count: int, span: int = 1) -> list[int]:
    """`count` reservations of `span` ports each (distinct, none overlapping)."""
    return [reserve(span) for _ in range(count)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m drorch.testing.ports", description=__doc__)
    parser.add_argument("count", nargs="?", type=int, default=1, help="how many (default 1)")
    parser.add_argument("--span", type=int, default=1, help="consecutive ports each (default 1)")
    args = parser.parse_args(argv)
    try:
        print(*reserve_many(args.count, args.span))
    except (RuntimeError, ValueError) as exc:
        parser.exit(2, f"drorch: error: {exc}\n")


if __name__ == "__main__":
    main()
