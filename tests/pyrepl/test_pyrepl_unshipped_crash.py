"""The unshipped ledger against real `drorch repl serve` processes that are killed or
stopped: what a crash or a clean stop leaves of the count (pyrepl/unshipped.py).

- kill -9 of an async primary while frames are in flight: the frames were acknowledged
  to the client and only memory knew them. The count cannot be exact then, and the
  ledger must say so (`uncounted`) rather than report a discard of nothing.
- a clean stop (SIGTERM) makes every accepted write durable: the count of them must be
  durable too, or the next failover's `discarded` record is low.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from drorch.replication.pyrepl.unshipped import read_file
from drorch.testing.tcp_proxy import TcpProxy
from tests.pyrepl.conftest import ServeProcess, wait_until
from tests.pyrepl.nbd_client import NbdClient

Start = Callable[..., ServeProcess]
BLOCK = 4096


def _block(i: int) -> bytes:
    return (i + 1).to_bytes(4, "big") * (BLOCK // 4)


def _in_sync(p: ServeProcess) -> bool:
    st = p.status()
    return bool(
        st["connection"] == "Connected"
        and st["disk"] == "UpToDate"
        and st["peer_disk"] == "UpToDate"
        and st["out_of_sync_bytes"] == 0
    )


def _ok(p: ServeProcess, *args: str) -> None:
    yes = () if args[0] == "connect" else ("--yes",)
    out = p.cli(*args, "--control", str(p.control), *yes)
    assert out.returncode == 0, out.stdout + out.stderr


def _ledger_file(tmp_path: Path, label: str) -> dict[str, Any]:
    data = read_file(tmp_path / f"{label}.img.pyrepl-meta.unshipped")
    assert isinstance(data, dict)
    return data


def test_kill9_of_an_async_primary_with_frames_in_flight_says_its_count_is_low(
    processes: Start, tmp_path: Path
) -> None:
    b = processes("b", "secondary", "async")
    host, port = b.listen.rsplit(":", 1)
    proxy = TcpProxy(("127.0.0.1", 0), (host, int(port)), mode="drop").start()
    try:
        a = processes(
            "a", "primary", "async", peer=f"127.0.0.1:{proxy.port}", extra=("--peer-timeout", "30s")
        )
        wait_until("initial sync", lambda: _in_sync(a))
        proxy.cut()  # a black hole: A goes on shipping into it, acknowledging (async)
        with NbdClient(*a.nbd, "vol") as nbd:
            for i in range(12):
                nbd.write(i * BLOCK, _block(i), fua=True)  # durable here, acknowledged
        a.kill9()  # site A lost before it noticed the link is gone
    finally:
        proxy.close()
    _ok(b, "disconnect")
    _ok(b, "promote", "--force", "--accept-data-loss")
    a2 = processes("a", "secondary", "async", peer=b.listen)
    _ok(a2, "resolve", "--discard-local", "--no-wait")  # A's own changes go
    _ok(b, "connect")
    wait_until("A resynced from B", lambda: _in_sync(a2), 30)
    data = a2.backing.read_bytes()
    lost = [i for i in range(12) if data[i * BLOCK : (i + 1) * BLOCK] != _block(i)]
    assert len(lost) == 12  # B never got them: the failover lost 12 FUA-acknowledged writes
    d = a2.status()["extra"]["discarded"]
    # the count (0) is below the loss: the record must exist and say the count is low
    assert d is not None, "a discard of 12 acknowledged writes left no record at all"
    assert d["writes"] < len(lost) and d["uncounted"], d
    assert "shipping asynchronously" in d["uncounted"]


def test_a_clean_stop_of_a_lone_primary_keeps_the_count_of_unflushed_writes(
    processes: Start, tmp_path: Path
) -> None:
    b = processes("b", "secondary", "async")
    a = processes("a", "primary", "async", peer=b.listen)
    wait_until("initial sync", lambda: _in_sync(a))
    _ok(a, "disconnect")
    with NbdClient(*a.nbd, "vol") as nbd:
        for i in range(3):
            nbd.write(i * BLOCK, _block(i))  # no FUA, no FLUSH: counted in memory
    assert a.status()["extra"]["unshipped"]["writes"] == 3
    assert a.terminate() == 0  # a clean stop makes the writes durable on disk ...
    assert a.backing.read_bytes()[:BLOCK] == _block(0)
    assert _ledger_file(tmp_path, "a")["open"]["writes"] == 3  # ... and their count
    a2 = processes("a", "primary", "async")
    st = a2.status()["extra"]["unshipped"]
    assert st is not None and st["writes"] == 3 and st["uncounted"] is None, st


def test_a_link_lost_cleanly_clears_the_mark_so_a_later_crash_is_not_flagged(
    processes: Start, tmp_path: Path
) -> None:
    b = processes("b", "secondary", "async")
    host, port = b.listen.rsplit(":", 1)
    proxy = TcpProxy(("127.0.0.1", 0), (host, int(port)), mode="reset").start()
    try:
        a = processes("a", "primary", "async", peer=f"127.0.0.1:{proxy.port}")
        wait_until("initial sync", lambda: _in_sync(a))
        with NbdClient(*a.nbd, "vol") as nbd:
            for i in range(20):
                nbd.write(i * BLOCK, _block(i), fua=True)
        before = (tmp_path / "a.img.pyrepl-meta.unshipped").stat().st_mtime_ns
        with NbdClient(*a.nbd, "vol") as nbd:
            for i in range(20):
                nbd.write(i * BLOCK, _block(i), fua=True)
        # the connected path writes the ledger once per link, not per FUA
        assert (tmp_path / "a.img.pyrepl-meta.unshipped").stat().st_mtime_ns == before
        proxy.cut()
        wait_until("A loses the peer", lambda: a.status()["connection"] != "Connected", 10)
        assert "async_in_flight" not in _ledger_file(tmp_path, "a")
        a.kill9()
    finally:
        proxy.close()
    a2 = processes("a", "primary", "async")
    st = a2.status()["extra"]["unshipped"]
    assert st is None or st["uncounted"] is None, st
