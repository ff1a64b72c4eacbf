"""Issue 14's check: behind the WAN proxy with 20 ms of one-way delay, a synchronous
4 KiB pyrepl write (real daemons, real NBD, real sockets) takes at least one round
trip, and the validator's distance warning predicts exactly that round trip."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drorch.lab.wan import Impairment, WanLink, WanState, WanStateFile, equivalent_distance_km
from drorch.lab.wan_proxy import ProxyThread
from drorch.model.loader import parse_cluster_text
from drorch.replication.base import Role
from tests.lab_wan.conftest import free_port
from tests.pyrepl.conftest import Cluster, connected, wait_until

DELAY = 0.020
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pair_behind_wan(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    mode = request.param
    cluster = Cluster(tmp_path)
    b = cluster.start("b", Role.SECONDARY, mode=mode)
    f = WanStateFile(tmp_path / "wan.json")
    link = WanLink("A-B:repl", "A-B", ("127.0.0.1", free_port()), b.listen)
    f.write(WanState((link,), Impairment(delay=DELAY)))
    proxy = ProxyThread(f, seed=3).start()
    try:
        a = cluster.start("a", Role.PRIMARY, mode=mode, peer=link.listen)
        wait_until("initial sync through the WAN", lambda: connected(a) and connected(b), 30)
        yield cluster
    finally:
        cluster.close()
        proxy.stop()


def write_latencies(cluster: Cluster, count: int = 5) -> list[float]:
    a = cluster.sides[1]
    out = []
    with a.client() as nbd:
        for i in range(count):
            start = time.monotonic()
            nbd.write(i * 4096, bytes([i + 1]) * 4096, fua=True)
            out.append(time.monotonic() - start)
    return out


@pytest.mark.parametrize("pair_behind_wan", ["sync"], indirect=True)
def test_a_sync_write_waits_one_round_trip_as_the_validator_predicts(
    pair_behind_wan: Cluster,
) -> None:
    latencies = write_latencies(pair_behind_wan)
    imp = Impairment(delay=DELAY)
    assert min(latencies) >= imp.round_trip  # 40 ms: the write went there and back
    assert max(latencies) < imp.round_trip + 0.1  # and not much more (bounded)

    sim = (REPO / "lab" / "sim.yaml").read_text()
    km = equivalent_distance_km(DELAY)
    text = re.sub(r"^distance_km: .*$", f"distance_km: {km:g}", sim, flags=re.M)
    _, warnings = parse_cluster_text(text, "sim.yaml")
    budget = [w for w in warnings if w.code == "latency-budget"]
    assert budget, "a sync volume 3900 km away must be warned about"
    predicted = re.search(r"at least ([\d.]+) ms", budget[0].message)
    assert predicted is not None
    assert float(predicted.group(1)) / 1000 == pytest.approx(imp.round_trip)
    assert min(latencies) >= float(predicted.group(1)) / 1000


@pytest.mark.parametrize("pair_behind_wan", ["async"], indirect=True)
def test_an_async_write_does_not_wait_for_the_wan(pair_behind_wan: Cluster) -> None:
    latencies = write_latencies(pair_behind_wan)
    assert sorted(latencies)[len(latencies) // 2] < DELAY  # median: acked locally
