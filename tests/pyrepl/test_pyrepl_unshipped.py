"""The unshipped ledger (pyrepl/unshipped.py) on real daemons: a primary counts the writes
its peer does not have, durably, and a side resynced from its peer reports the exact
count it discarded: the RPO of an async failover, stated after the fact."""

from __future__ import annotations

from drorch.replication.base import Role
from drorch.replication.pyrepl.unshipped import Ledger, read_file
from tests.pyrepl.conftest import REGION, Cluster, connected, wait_until


def _ledger(cluster: Cluster, label: str) -> dict[str, object]:
    data = read_file(cluster.root / f"{label}.img.pyrepl-meta.unshipped")
    assert isinstance(data, dict)
    return data


def test_async_primary_alone_counts_its_writes_durably_before_the_flush_answers(
    cluster: Cluster,
) -> None:
    a, b = cluster.pair(mode="async")
    assert a.status()["extra"]["unshipped"] is None  # connected: nothing only here
    a.call("disconnect")
    with a.client() as nbd:
        for i in range(5):
            nbd.write(i * 512, b"x" * 512)
            nbd.flush()
            # durable when the flush is answered, not later
            assert _ledger(cluster, "a")["open"]["writes"] == i + 1  # type: ignore[index]
        nbd.write(7 * REGION, b"y" * 4096, fua=True)
        assert _ledger(cluster, "a")["open"]["writes"] == 6  # type: ignore[index]
    st = a.status()["extra"]["unshipped"]
    assert st["writes"] == 6 and st["bytes"] == 5 * 512 + 4096, st
    assert st["first"] is not None and st["last"] >= st["first"]
    assert b.status()["extra"]["unshipped"] is None  # a secondary accepts no writes


def test_the_ledger_survives_a_restart_of_the_primary(cluster: Cluster) -> None:
    a, _b = cluster.pair(mode="async")
    a.call("disconnect")
    with a.client() as nbd:
        for i in range(3):
            nbd.write(i * REGION, b"z" * 4096, fua=True)
    cluster.stop(a)  # what a crash leaves: the file written before each acknowledgement
    again = Ledger(cluster.root / "a.img.pyrepl-meta.unshipped")
    assert again.open.writes == 3 and again.open.bytes == 3 * 4096


def test_a_resync_to_the_peer_clears_it(cluster: Cluster) -> None:
    a, b = cluster.pair(mode="async")
    a.call("disconnect")
    with a.client() as nbd:
        for i in range(4):
            nbd.write(i * REGION, b"q" * 4096, fua=True)
    assert a.status()["extra"]["unshipped"]["writes"] == 4
    a.call("connect")
    wait_until("resync", lambda: connected(a) and connected(b))
    extra = a.status()["extra"]
    assert extra["unshipped"] is None and extra["discarded"] is None  # the peer has them
    assert _ledger(cluster, "a")["open"]["writes"] == 0  # type: ignore[index]


def test_after_a_failover_the_old_primary_reports_exactly_what_it_discarded(
    cluster: Cluster,
) -> None:
    a, b = cluster.pair(mode="async")
    a.call("disconnect")
    b.call("disconnect")
    with a.client() as nbd:  # A goes on alone: these never reach B
        for i in range(9):
            nbd.write(i * 4096, bytes([i + 1]) * 4096, fua=True)
    b.call("promote", force=True, accept_data_loss=True)  # the failover, A presumed lost
    with b.client() as nbd:
        nbd.write(50 * REGION, b"B" * 4096, fua=True)
    # A returns: demoted, its changes discarded, resynced from B
    a.call("demote")
    a.call("resolve", discard_local=True, wait=0.1)
    b.call("connect", wait=0.1)
    wait_until("A resynced from B", lambda: connected(a) and connected(b))
    extra = a.status()["extra"]
    assert extra["unshipped"] is None
    d = extra["discarded"]
    assert d["writes"] == 9 and d["bytes"] == 9 * 4096, d
    assert d["discarded_at"] is not None and d["generation"]
    assert a.content()[:4096] == bytes(4096)  # really gone: B's copy
    # durable, and still there after a restart
    assert Ledger(cluster.root / "a.img.pyrepl-meta.unshipped").discarded is not None
    assert b.status()["extra"]["unshipped"] is None  # B's write reached A in the resync


def test_frames_in_flight_at_a_link_loss_are_counted() -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(Path(tmp) / "l")
        ledger.note_lost_frames(3, 12288, 100.0, 101.5)
        ledger.note(512, 102.0)
        ledger.persist()
        again = Ledger(Path(tmp) / "l")
        assert (again.open.writes, again.open.bytes) == (4, 12800)
        assert (again.open.first, again.open.last, again.open.seconds) == (100.0, 102.0, 2.0)
        assert again.discard(103.0, "g1") is not None and again.open.writes == 0
        assert again.discard(104.0, "g2") is None  # nothing more to discard


def test_an_unreadable_ledger_does_not_stop_a_start(cluster: Cluster) -> None:
    path = cluster.root / "a.img.pyrepl-meta.unshipped"
    path.write_text("{not json")
    a = cluster.start("a", Role.PRIMARY, mode="async")
    st = a.status()["extra"]["unshipped"]  # empty, and says the count may be low
    assert st["writes"] == 0 and "unreadable" in st["uncounted"], st


def test_async_writes_in_flight_when_the_link_dies_are_counted(cluster: Cluster) -> None:
    """Acknowledged at once (async), sent into a link that swallows them: when the link
    is declared lost, each unacknowledged data frame is counted as only at A."""
    from drorch.testing.tcp_proxy import TcpProxy

    b = cluster.start("b", Role.SECONDARY, mode="async")
    proxy = TcpProxy(("127.0.0.1", 0), b.listen, mode="drop").start()
    try:
        a = cluster.start(
            "a", Role.PRIMARY, mode="async", peer=("127.0.0.1", proxy.port), peer_timeout=1.0
        )
        wait_until("initial sync", lambda: connected(a) and connected(b))
        proxy.cut()  # a black hole: A notices only by its peer timeout
        with a.client() as nbd:
            for i in range(4):
                nbd.write(i * REGION, b"f" * 4096)  # acknowledged: async, queued
        assert a.status()["extra"]["unshipped"] is None  # still "travelling"
        wait_until("A loses the peer", lambda: a.status()["connection"] != "Connected", 10)
        st = a.status()["extra"]["unshipped"]
        assert st is not None and st["writes"] == 4 and st["bytes"] == 4 * 4096, st
        assert _ledger(cluster, "a")["open"]["writes"] == 4  # type: ignore[index]
    finally:
        proxy.close()
