"""Property: random writes interleaved with live sync <-> async switches never lose an
acknowledged write, and a write acknowledged in sync mode is on the secondary's disk
when its acknowledgement arrives.

Hypothesis drives one NBD client on the primary of an in-process pair (real sockets,
files and engines; the link through the lab WAN proxy at DELAY one-way, so async writes
get ahead of the peer): writes of 4 KiB to 512 KiB anywhere in the volume, each with
its own pattern, mixed with `set_mode` sync / async requests issued without waiting (a
switch to sync may still be draining when the next write or switch comes, and a switch
to async may cancel a drain; the explicit examples make sure both happen). Whenever
the primary says it replicates sync before a write (flipped, or switch done), that
write's bytes must be in the secondary's backing file once acknowledged (RPO 0). At the
end the volume is switched to sync and, once in sync, both sides hold exactly the
acknowledged writes. Bounded: 15 generated examples plus 2 explicit, each on a fresh
pair (about 30 s).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from drorch.lab.wan import Impairment, WanLink, WanState, WanStateFile
from drorch.lab.wan_proxy import ProxyThread
from drorch.replication.base import Role
from tests.ports import free_port
from tests.pyrepl.conftest import SIZE, Cluster, Side, connected, wait_until

UNIT = 4 * 1024
LENGTHS = (4 * 1024, 64 * 1024, 512 * 1024)  # large ones build an async backlog > 1 MiB
DELAY = 0.03  # one-way, between the sites: async writes get ahead, drains take a while
Op = tuple[str, int, int, int]

writes = st.tuples(
    st.just("write"),
    st.integers(0, SIZE // UNIT - 1),  # where, in 4 KiB units
    st.integers(1, 255),  # the pattern byte
    st.integers(0, len(LENGTHS) - 1),
)
switches = st.tuples(st.just("mode"), st.sampled_from([0, 1]), st.just(0), st.just(0))
SYNC, ASYNC = ("mode", 0, 0, 0), ("mode", 1, 0, 0)
BIG = [("write", 128, 0x5A, 2)]  # 512 KiB at 512 KiB
ops = st.lists(st.one_of(writes, writes, switches), min_size=1, max_size=40)


def sync_now(side: Side) -> bool:
    st_ = side.status()
    return bool(st_["mode"] == "sync" and not st_["extra"]["mode_switch"])


def run(ops: list[Op], a: Side, b: Side) -> None:
    image = bytearray(a.content())  # the initial sync made both sides equal
    with a.client() as client:
        for kind, x, y, z in ops:
            if kind == "mode":
                reply = a.call("set_mode", mode=("sync", "async")[x])  # returns while draining
                event(f"set_mode: {reply['message'].split(' (')[0].split(':')[0]}")
                continue
            offset = x * UNIT
            data = bytes([y]) * min(LENGTHS[z], SIZE - offset)
            # flipped (or done): from the flip on, every write waits for the peer's disk
            was_sync = a.status()["mode"] == "sync"
            client.write(offset, data)
            image[offset : offset + len(data)] = data  # acknowledged: never to be lost
            event("write acknowledged sync" if was_sync else "write acknowledged async")
            if was_sync:  # acknowledged as sync: on B's disk already
                got = b.content()[offset : offset + len(data)]
                assert got == data, f"a sync write at {offset} is not on B when acknowledged"
        client.flush()
    a.call("set_mode", mode="sync")
    wait_until("switched to sync", lambda: sync_now(a) and b.status()["mode"] == "sync", 30)
    wait_until("in sync", lambda: connected(a) and connected(b), 30)
    assert a.content() == bytes(image), "the primary lost an acknowledged write"
    assert b.content() == bytes(image), "the secondary lacks an acknowledged write"


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=ops, start=st.sampled_from(["sync", "async"]))
@example(  # a backlog of 2 MiB, then sync requested: a drain with writes during it
    ops=[*BIG * 4, SYNC, *BIG * 2, ("write", 7, 9, 0), ASYNC, *BIG, SYNC, ("write", 0, 1, 1)],
    start="async",
)
@example(ops=[ASYNC, *BIG * 3, SYNC, ASYNC, SYNC, *BIG], start="sync")  # a drain cancelled
def test_writes_across_mode_switches_lose_nothing_acknowledged(ops: list[Op], start: str) -> None:
    with tempfile.TemporaryDirectory(prefix="pms") as root:
        cluster = Cluster(Path(root))
        proxy = None
        try:
            b = cluster.start("b", Role.SECONDARY, mode=start)
            state = WanStateFile(Path(root) / "wan.json")
            link = WanLink("a->b", "A-B", ("127.0.0.1", free_port()), b.listen)
            state.write(WanState((link,), Impairment(delay=DELAY)))
            proxy = ProxyThread(state, seed=5).start()
            a = cluster.start("a", Role.PRIMARY, mode=start, peer=link.listen)
            wait_until("initial sync", lambda: connected(a) and connected(b), 30)
            run(ops, a, b)
        finally:
            cluster.close()
            if proxy is not None:
                proxy.stop()
