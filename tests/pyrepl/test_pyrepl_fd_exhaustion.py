"""Running out of file descriptors is a moment, not the end (attack finding A1).

A `repl serve` daemon whose fd limit is reached fails accept() with EMFILE. It used to
end its accept loops on that error: once the flood was gone, the NBD export, the
replication listener and the control socket never accepted again, in a daemon that
still looked alive. Now each loop pauses and accepts again (drorch.accepting). The
test lowers the running daemon's RLIMIT_NOFILE with prlimit(2), floods the NBD port
past it, lets the flood go, and then needs a real client (qemu-io) and the control
socket to be served again."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import time
from collections.abc import Callable

from tests.pyrepl.conftest import ServeProcess, wait_until
from tests.pyrepl.nbd_client import NbdClient

FLOOD = 14  # the limit leaves room for ~6; the rest waits in the backlog (16)


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _flood(host: str, port: int) -> list[socket.socket]:
    held = []
    for _ in range(FLOOD):
        s = socket.create_connection((host, port), timeout=5)
        held.append(s)
    return held


def test_nbd_and_control_accept_again_after_fd_exhaustion(
    processes: Callable[..., ServeProcess],
) -> None:
    side = processes("a", "primary", mode="async")
    host, port = side.nbd
    pid = side.proc.pid
    limit = _open_fds(pid) + 6
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))  # the limit stays low
    held = _flood(host, port)  # the backlog takes what accept() can no longer
    try:
        wait_until("the daemon reaches its fd limit", lambda: _open_fds(pid) >= limit - 1)
        time.sleep(1.5)  # several failed accepts: the old loop would have returned by now
        assert side.proc.poll() is None
    finally:
        for s in held:
            s.close()
    # the flood is gone: the daemon must accept a real client and its control socket again

    def served() -> bool:
        try:
            with NbdClient(host, port, export="vol", timeout=3) as c:
                c.write(0, b"\x5a" * 4096, fua=True)
                return c.read(0, 4096) == b"\x5a" * 4096
        except (OSError, EOFError):
            return False

    wait_until("the NBD export serves again", served, timeout=20)
    out = subprocess.run(
        ["qemu-io", "-f", "raw", "-c", "read -P 0x5a 0 4k", f"nbd://{host}:{port}/vol"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "read 4096/4096" in out.stdout, out.stdout + out.stderr
    assert side.status()["role"] == "primary"  # the control socket accepts again too
    log = side.log.read_text()
    assert "accept failed" in log and "accepting again" in log, log[-2000:]


def test_an_nbd_flood_cannot_lock_the_operator_out_of_the_control_socket(
    processes: Callable[..., ServeProcess],
) -> None:
    """Attack: with the fd limit at 256, 261 idle connections to the NBD port (anyone who
    reaches it may connect) took every descriptor, and the control socket answered
    nothing (no status, promote, demote) for as long as they were held. The NBD export
    now serves at most MAX_CLIENTS at once and closes the rest at once."""
    side = processes("a", "primary", mode="async")
    host, port = side.nbd
    pid = side.proc.pid
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (256, 256))
    held: list[socket.socket] = []
    try:
        for _ in range(300):
            held.append(socket.create_connection((host, port), timeout=5))
        time.sleep(1.0)  # every one accepted (or closed) by now
        assert side.status()["role"] == "primary"  # the control socket still answers
        assert _open_fds(pid) < 200
    finally:
        for s in held:
            s.close()
    assert "the most it takes at once" in side.log.read_text()
