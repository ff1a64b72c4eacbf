"""The live mode switch with real `drorch repl serve` processes and a real client
(qemu-io over the NBD export): kill -9 in the middle of a drain, and a restart that
keeps the switched mode against the config's --mode."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from tests.pyrepl.conftest import ServeProcess, wait_until

Start = Callable[..., ServeProcess]


def qemu_io(p: ServeProcess, *commands: str) -> subprocess.CompletedProcess[str]:
    host, port = p.nbd
    argv = ["qemu-io", "-f", "raw"]
    for c in commands:
        argv += ["-c", c]
    argv.append(f"nbd://{host}:{port}/vol")
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def in_sync(a: ServeProcess, b: ServeProcess) -> bool:
    sa, sb = a.status(), b.status()
    return (
        sa["connection"] == sb["connection"] == "Connected"
        and sb["disk"] == "UpToDate"
        and sa["out_of_sync_bytes"] == 0
    )


def test_kill9_while_draining_resumes_the_switch_after_restart(processes: Start) -> None:
    b = processes("b", "secondary", "async")
    a = processes("a", "primary", "async", peer=b.listen)
    wait_until("connected", lambda: in_sync(a, b))
    assert b.cli("disconnect", "--control", str(b.control), "--yes").returncode == 0
    wait_until("a loses b", lambda: a.status()["connection"] != "Connected")
    out = qemu_io(a, "write -P 0x5a 0 2M")  # async, peer away: acknowledged alone
    assert out.returncode == 0, out.stderr
    req = a.cli("set-mode", "sync", "--no-wait", "--control", str(a.control), "--yes")
    assert req.returncode == 0, req.stderr
    st = a.status()
    assert st["mode"] == "async" and st["extra"]["mode_switch"]["phase"] == "draining"
    a.kill9()
    a2 = processes("a", "primary", "async", peer=b.listen)  # the config still says async
    st = a2.status()
    assert st["mode"] == "async", "resumed drain: nothing sync before the peer has it"
    assert st["extra"]["mode_switch"] and st["extra"]["mode_source"]["live"]
    assert b.cli("connect", "--no-wait", "--control", str(b.control)).returncode == 0
    wait_until(
        "switched",
        lambda: a2.status()["mode"] == "sync" and not a2.status()["extra"]["mode_switch"],
        timeout=30,
    )
    wait_until("in sync", lambda: in_sync(a2, b))
    assert b.status()["mode"] == "sync"
    out = qemu_io(a2, "write -P 0xc3 1M 64k", "flush")
    assert out.returncode == 0, out.stderr
    # sync now: on B's disk once qemu-io got its answer
    assert b.backing.read_bytes() == a2.backing.read_bytes()
    data = b.backing.read_bytes()
    assert data[:65536] == b"\x5a" * 65536 and data[1 << 20 : (1 << 20) + 65536] == b"\xc3" * 65536


def test_a_switched_mode_survives_a_clean_restart_with_the_old_mode(processes: Start) -> None:
    b = processes("b", "secondary", "async")
    a = processes("a", "primary", "async", peer=b.listen)
    wait_until("connected", lambda: in_sync(a, b))
    done = a.cli("set-mode", "sync", "--control", str(a.control), "--yes")
    assert done.returncode == 0, done.stderr
    assert "drain to sync" in done.stderr  # the progress line
    assert a.terminate() == 0  # SIGTERM: flush, exit 0
    a2 = processes("a", "primary", "async", peer=b.listen)
    st = a2.status()
    assert st["mode"] == "sync" and st["extra"]["mode_source"] == {
        "live": True,
        "serial": 1,
        "started_as": "async",
    }
    assert "not --mode async" in a2.log.read_text()
    wait_until("connected", lambda: in_sync(a2, b))
    back = a2.cli("set-mode", "async", "--control", str(a2.control), "--yes")
    assert back.returncode == 0 and "switched to async" in back.stdout
