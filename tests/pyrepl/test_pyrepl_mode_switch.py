"""Live sync <-> async switch (modeswitch.py) on real in-process daemons: real sockets,
files and NBD clients; the process-level cases (kill -9, qemu-io, restarts) are in
test_pyrepl_mode_switch_processes.py."""

from __future__ import annotations

import threading

import pytest

from drorch.replication.base import ReplicationError, Role, UnsafeOperation
from drorch.replication.pyrepl.meta import load_meta
from drorch.testing.tcp_proxy import TcpProxy
from tests.pyrepl.conftest import Cluster, Side, connected, wait_until


def block(i: int) -> bytes:
    return i.to_bytes(4, "big") * 1024


def switched(side: Side, mode: str) -> bool:
    st = side.status()
    return st["mode"] == mode and not st["extra"]["mode_switch"]


def test_async_to_sync_on_a_connected_pair_then_writes_are_sync(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="async")
    with a.client() as c:
        for i in range(32):
            c.write(i * 4096, block(i))
    assert a.status()["extra"]["sync_write_latency_us"] is None  # nothing sync yet
    reply = a.call("set_mode", mode="sync")
    assert reply["message"].startswith(("switched to sync", "switching to sync"))
    wait_until("switched", lambda: switched(a, "sync") and b.status()["mode"] == "sync")
    with a.client() as c:
        c.write(1 << 20, block(99))
        # sync: on B's disk when acknowledged
        assert b.content()[1 << 20 : (1 << 20) + 4096] == block(99)
    lat = a.status()["extra"]["sync_write_latency_us"]
    assert lat is not None and lat["count"] == 1
    for side in (a, b):
        meta = load_meta(side.engine.config.meta_file)
        assert (meta.mode, meta.mode_serial, meta.mode_switching) == ("sync", 1, False)
    assert a.status()["extra"]["mode_last_switch"]["to"] == "sync"
    assert a.content() == b.content()


def test_sync_to_async_is_at_once_and_refused_while_two_primaries_allowed(
    cluster: Cluster,
) -> None:
    a, b = cluster.pair(mode="sync")
    a.call("allow_two_primaries")
    with pytest.raises(ReplicationError, match="two primaries are allowed"):
        a.call("set_mode", mode="async")
    a.call("forbid_two_primaries")
    reply = a.call("set_mode", mode="async")
    assert reply["message"] == "switched to async (was sync)" and reply["mode"] == "async"
    wait_until("b follows", lambda: b.status()["mode"] == "async")
    assert a.call("set_mode", mode="async")["message"] == "already async"


def test_options_of_the_other_mode_are_refused(cluster: Cluster) -> None:
    a, _ = cluster.pair(mode="async")
    with pytest.raises(ReplicationError, match="max-lag: not an option of sync mode"):
        a.call("set_mode", mode="sync", max_lag_bytes=1 << 20)
    with pytest.raises(ReplicationError, match="fencing: not an option of async mode"):
        a.call("set_mode", mode="async", fencing="dont-care")
    assert a.status()["mode"] == "async"


def test_drain_waits_for_an_absent_peer_writes_stay_async_then_resync_and_flip(
    cluster: Cluster,
) -> None:
    b = cluster.start("b", Role.SECONDARY, mode="async")
    proxy = TcpProxy(("127.0.0.1", 0), b.listen).start()
    try:
        a = cluster.start("a", Role.PRIMARY, mode="async", peer=("127.0.0.1", proxy.port))
        wait_until("initial sync", lambda: connected(a) and connected(b))
        proxy.cut()
        wait_until("a loses b", lambda: a.status()["connection"] != "Connected")
        with a.client() as c:  # async, peer away: acknowledged alone
            for i in range(64):
                c.write(i * 65536, block(i))
        a.call("set_mode", mode="sync")
        st = a.status()
        assert st["mode"] == "async", "no write may count as sync before the drain"
        sw = st["extra"]["mode_switch"]
        assert sw["phase"] == "draining" and sw["waiting_for"] == "the peer to connect"
        assert sw["backlog_bytes_at_start"] == 64 * 65536
        with a.client() as c:  # still acknowledged (async) while draining
            c.write(3 << 20, block(7))
        assert a.status()["extra"]["sync_write_latency_us"] is None
        proxy.heal()
        wait_until("switched", lambda: switched(a, "sync"), timeout=30)
        wait_until("in sync", lambda: connected(a) and connected(b))
        assert b.status()["mode"] == "sync"
        assert a.content() == b.content()
    finally:
        proxy.close()


def test_link_cut_during_the_drain_loses_nothing(cluster: Cluster) -> None:
    """Writers keep writing through the request, a cut mid-drain and the heal: every
    acknowledged block is on both disks at the end, in order (last write wins)."""
    b = cluster.start("b", Role.SECONDARY, mode="async", resync_rate=2 << 20)
    proxy = TcpProxy(("127.0.0.1", 0), b.listen).start()
    try:
        a = cluster.start(
            "a", Role.PRIMARY, mode="async", peer=("127.0.0.1", proxy.port), resync_rate=2 << 20
        )
        wait_until("initial sync", lambda: connected(a) and connected(b))
        proxy.cut()
        wait_until("a loses b", lambda: a.status()["connection"] != "Connected")
        with a.client() as c:
            for i in range(48):  # 3 MiB to resync at 2 MiB/s: the drain takes a while
                c.write(i * 65536, bytes([i + 1]) * 65536)
        a.call("set_mode", mode="sync")
        proxy.heal()
        wait_until(
            "resyncing",
            lambda: (
                "resync" in (a.status()["extra"]["mode_switch"] or {}).get("waiting_for", "resync")
                and a.status()["connection"] == "SyncSource"
            ),
            timeout=20,
        )
        stop = threading.Event()
        acked: dict[int, int] = {}

        def writer() -> None:
            with a.client() as c:
                n = 0
                while not stop.is_set() and n < 2000:
                    n += 1
                    off = (n % 16) * 4096 + (3 << 20)
                    c.write(off, n.to_bytes(4, "big") * 1024)
                    acked[off] = n

        t = threading.Thread(target=writer)
        t.start()
        proxy.cut()  # mid-drain
        wait_until("a loses b", lambda: a.status()["connection"] != "Connected")
        assert a.status()["mode"] == "async" and a.status()["extra"]["mode_switch"]
        proxy.heal()
        wait_until("switched", lambda: switched(a, "sync"), timeout=40)
        stop.set()
        t.join(30)
        wait_until("in sync", lambda: connected(a) and connected(b), timeout=30)
        data_a, data_b = a.content(), b.content()
        assert data_a == data_b
        for off, n in acked.items():
            assert data_b[off : off + 4096] == n.to_bytes(4, "big") * 1024
    finally:
        proxy.close()


def test_sync_to_async_on_a_frozen_primary_needs_the_data_loss_acknowledged(
    cluster: Cluster,
) -> None:
    a, b = cluster.pair(mode="sync", fencing="resource-only")
    cluster.stop(b)
    wait_until("a loses b", lambda: a.status()["connection"] != "Connected")
    result: list[object] = []

    def write() -> None:
        try:
            with a.client() as c:
                c.write(0, block(5))
            result.append("ok")
        except Exception as exc:  # recorded and asserted below
            result.append(exc)

    t = threading.Thread(target=write)
    t.start()
    wait_until("frozen", lambda: a.status()["extra"]["io"] == "suspended")
    with pytest.raises(UnsafeOperation, match="accept-data-loss"):
        a.call("set_mode", mode="async")
    assert a.status()["mode"] == "sync" and not result
    a.call("set_mode", mode="async", accept_data_loss=True)
    t.join(10)
    assert result == ["ok"]


def test_outdated_since_is_recorded_durably_and_survives_a_restart(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="sync", fencing="resource-only")
    assert a.status()["peer_outdated_since"] is None
    cluster.stop(b)
    wait_until("a loses b", lambda: a.status()["connection"] != "Connected")
    a.call("outdate_peer", accept_data_loss=True)
    since = a.status()["peer_outdated_since"]
    assert since is not None and since.endswith("Z") and since[:2] == "20"
    meta_file = a.engine.config.meta_file
    assert load_meta(meta_file).peer_outdated_since is not None
    cluster.stop(a)
    again = cluster.start("a", Role.PRIMARY, mode="sync", fencing="resource-only")
    assert again.status()["peer_outdated_since"] == since
    assert again.status()["extra"]["peer_outdated_since"] == since


def test_set_mode_async_on_the_secondary_never_turns_the_sync_primary_async(
    cluster: Cluster,
) -> None:
    """Attack: `set-mode async` on the secondary gave it a higher mode serial, and at the
    next reconnect the sync primary adopted async: acknowledging writes alone without any
    command on the primary."""
    a, b = cluster.pair(mode="sync")
    reply = b.call("set_mode", mode="async")
    assert "switch it there" in reply["message"]
    assert a.status()["mode"] == "sync"
    b.call("disconnect")  # one link blip
    wait_until("a loses b", lambda: a.status()["connection"] != "Connected")
    b.call("connect")
    wait_until("reconnected", lambda: connected(a) and connected(b))
    assert a.status()["mode"] == "sync"
    with a.client() as c:
        c.write(1 << 20, block(7))
        assert b.content()[1 << 20 : (1 << 20) + 4096] == block(7)  # still sync
    back = a.call("set_mode", mode="async")  # the primary's own switch still works
    assert back["message"].startswith("switched to async")
    wait_until("b follows", lambda: b.status()["mode"] == "async")


def test_a_flip_the_peer_never_confirmed_is_not_reported_done(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack: the flip leaves up to 1 MiB queued; a link lost before the peer's MODE
    acknowledgement ended the switch, and `set-mode sync` said `sync after 5.8 s`, exit
    0, while the peer had not received the acknowledged async backlog."""
    from click.testing import CliRunner

    from drorch.cli.main import cli
    from drorch.replication.pyrepl import modeswitch

    b = cluster.start("b", Role.SECONDARY, mode="async")
    proxy = TcpProxy(("127.0.0.1", 0), b.listen).start()
    try:
        a = cluster.start("a", Role.PRIMARY, mode="async", peer=("127.0.0.1", proxy.port))
        wait_until("initial sync", lambda: connected(a) and connected(b))
        hold = threading.Event()
        original = modeswitch.on_mode_frame

        def stalled(engine: object, body: dict[str, object]) -> None:  # B never acks MODE
            hold.wait(20)
            original(engine, body)  # type: ignore[arg-type]

        monkeypatch.setattr(modeswitch, "on_mode_frame", stalled)
        result: list[object] = []
        args = [
            "repl",
            "set-mode",
            "sync",
            "--control",
            str(a.control),
            "--timeout",
            "30s",
            "--yes",
        ]
        t = threading.Thread(target=lambda: result.append(CliRunner().invoke(cli, args)))
        t.start()
        wait_until(
            "flipped", lambda: (a.status()["extra"]["mode_switch"] or {}).get("phase") == "flipped"
        )
        proxy.cut()
        t.join(40)
        hold.set()
        run = result[0]
        assert run.exit_code == 1, run.output  # type: ignore[attr-defined]
        assert "not drained" in run.output  # type: ignore[attr-defined]
        assert a.status()["extra"]["mode_last_switch"]["confirmed"] is False
    finally:
        hold.set()
        proxy.close()


def test_sync_adopted_at_connect_is_not_reported_done_mid_resync(cluster: Cluster) -> None:
    """Attack: `set-mode sync` on the secondary (the driver asks both nodes), a reconnect,
    and the primary adopted sync at connect with no drain; `set-mode sync` on it then
    answered `already sync` while 3 MiB were still being resynced."""
    b = cluster.start("b", Role.SECONDARY, mode="async", resync_rate=1 << 20)
    a = cluster.start("a", Role.PRIMARY, mode="async", peer=b.listen, resync_rate=1 << 20)
    wait_until("initial sync", lambda: connected(a) and connected(b))
    b.call("disconnect")
    wait_until("a loses b", lambda: a.status()["connection"] != "Connected")
    with a.client() as c:
        for i in range(48):  # 3 MiB written alone
            c.write(i * 65536, bytes([i + 1]) * 65536)
    b.call("set_mode", mode="sync")
    b.call("connect")
    wait_until("resyncing", lambda: a.status()["connection"] == "SyncSource")
    assert a.status()["mode"] == "sync"  # adopted from the secondary at connect
    reply = a.call("set_mode", mode="sync")
    assert reply["message"] != "already sync"
    assert reply["mode_switch"] and "resync" in reply["mode_switch"]["waiting_for"]
    wait_until("switched", lambda: switched(a, "sync"), timeout=30)
    assert connected(a) and a.content() == b.content()
    assert load_meta(a.engine.config.meta_file).mode_switching is False


def test_switches_on_both_sides_while_apart_do_not_keep_the_pair_apart(
    cluster: Cluster,
) -> None:
    """Attack: B (secondary) set to async and A (primary) to sync while apart both reached
    mode serial 1; the connect refused "same serial, different modes" for good and A's
    drain waited for a peer it refused. The primary's switch wins such a tie."""
    a, b = cluster.pair(mode="async")
    b.call("disconnect")
    wait_until("apart", lambda: a.status()["connection"] != "Connected")
    b.call("set_mode", mode="async")
    a.call("set_mode", mode="sync")
    assert a.status()["extra"]["mode_source"]["serial"] == 1
    assert b.status()["extra"]["mode_source"]["serial"] == 1
    b.call("connect")
    wait_until("switched", lambda: switched(a, "sync"), timeout=20)
    wait_until("in sync", lambda: connected(a) and connected(b))
    assert b.status()["mode"] == "sync"
