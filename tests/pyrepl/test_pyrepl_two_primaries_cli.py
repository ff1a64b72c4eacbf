"""Two primaries through the command line: real `drorch repl serve` processes, the
`repl allow-two-primaries|promote|demote|forbid-two-primaries` commands, and qemu-io /
qemu-img as the NBD clients (a QEMU at the destination keeps its connection across the
hand-over)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable

from tests.pyrepl.conftest import ServeProcess, wait_until
from tests.pyrepl.test_pyrepl_serve_cli import pair

Start = Callable[..., ServeProcess]


def uri(side: ServeProcess) -> str:
    host, port = side.nbd
    return f"nbd://{host}:{port}/vol"


def qemu_io(side: ServeProcess, *commands: str) -> subprocess.CompletedProcess[str]:
    argv = ["qemu-io", "-f", "raw"]
    for c in commands:
        argv += ["-c", c]
    return subprocess.run([*argv, uri(side)], capture_output=True, text=True, timeout=60)


def state(side: ServeProcess) -> str:
    return str(side.status()["extra"]["two_primaries"]["state"])


def test_cli_two_primaries_hand_over_with_qemu_clients(processes: Start) -> None:
    a, b = pair(processes, "sync")
    out = b.cli("promote", "--yes", "--control", str(b.control))
    assert out.returncode == 3 and "two primaries are not allowed" in out.stderr
    out = a.cli("allow-two-primaries", "--control", str(a.control), "--format", "json", "--yes")
    assert out.returncode == 0 and "two primaries allowed" in out.stdout, out.stderr
    out = b.cli("promote", "--yes", "--control", str(b.control), "--epoch", "7")
    assert out.returncode == 0 and "second primary" in out.stdout, out.stderr
    wait_until("a sees b join", lambda: state(a) == "first-primary")

    # both sides write at once, the same blocks too: qemu-io at A and at B
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def write(side: ServeProcess, pattern: int, name: str) -> None:
        cmds = [f"write -P {pattern} {(i * 3 % 48) * 65536} 64k" for i in range(48)]
        results[name] = qemu_io(side, *cmds, "flush")

    threads = [
        threading.Thread(target=write, args=(a, 0x11, "a")),
        threading.Thread(target=write, args=(b, 0x22, "b")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r.returncode == 0 for r in results.values()), results
    # a write at B is readable at A (and the other way round)
    assert qemu_io(b, "write -P 0x5a 3M 64k").returncode == 0
    seen = qemu_io(a, "read -P 0x5a 3M 64k")
    assert seen.returncode == 0 and "Pattern verification failed" not in seen.stdout

    # one qemu-io session at B across the hand-over: the connection is not interrupted
    session = subprocess.Popen(
        ["qemu-io", "-f", "raw", uri(b)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert session.stdin is not None
    before = b.status()["extra"]["two_primaries"]["forwarded"]
    session.stdin.write("write -P 0x61 2M 64k\n")
    session.stdin.flush()
    wait_until(
        "first write forwarded",
        lambda: b.status()["extra"]["two_primaries"]["forwarded"] > before,
    )
    out = a.cli("demote", "--yes", "--control", str(a.control))
    assert out.returncode == 0, out.stderr
    wait_until("b is sole primary", lambda: state(b) == "off")
    session.stdin.write("write -P 0x62 2M 64k\nread -P 0x62 2M 64k\nflush\n")
    stdout, stderr = session.communicate(timeout=60)
    assert session.returncode == 0, stderr
    assert stdout.count("wrote 65536/65536 bytes") == 2, stdout
    assert "Pattern verification failed" not in stdout and "error" not in stdout.lower()
    assert b.status()["epoch"] == 7 and b.status()["role"] == "primary"

    out = b.cli("forbid-two-primaries", "--control", str(b.control))
    assert out.returncode == 0, out.stderr
    wait_until("quiet", lambda: b.status()["lag_bytes"] == 0 and a.status()["epoch"] == 7)
    same = subprocess.run(
        ["qemu-img", "compare", "-f", "raw", "-F", "raw", str(a.backing), str(b.backing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert same.returncode == 0, same.stdout + same.stderr


def test_cli_refusals(processes: Start) -> None:
    a, b = pair(processes, "async")
    for dry in ((), ("--dry-run",)):  # refused before any question, in the dry run too
        out = a.cli("allow-two-primaries", "--control", str(a.control), *dry)
        assert out.returncode == 1 and "two primaries need sync replication" in out.stderr
    out = b.cli("forbid-two-primaries", "--control", str(b.control))
    assert out.returncode == 0 and "already forbidden" in out.stdout


def test_a_hung_first_primary_fails_the_second_primarys_writes(processes: Start) -> None:
    """SIGSTOP the first primary: the second's forwarded write is never acknowledged;
    the link drops on silence and the write fails with EIO (the second is orphaned)."""
    a, b = pair(processes, "sync")
    assert a.cli("allow-two-primaries", "--control", str(a.control), "--yes").returncode == 0
    assert b.cli("promote", "--yes", "--control", str(b.control)).returncode == 0
    wait_until("a sees b join", lambda: state(a) == "first-primary")
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        out = qemu_io(b, "write -P 0x77 1M 64k")
        assert "write failed: Input/output error" in out.stdout + out.stderr, out
        assert state(b) == "orphaned"
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    assert b.backing.read_bytes()[1 << 20 : (1 << 20) + 65536] != b"\x77" * 65536
