"""observe() asks the real witness (mutual TLS on loopback): the view per site, the
outdate records, and why a site could not be asked; status shows per replica whether it
is guaranteed current."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from drorch.decide.currency import currency
from drorch.decide.snapshot import ReplicaView, Snapshot
from drorch.environment import Environment
from drorch.model.loader import parse_cluster_text
from drorch.model.types import Cluster, Witness
from drorch.observe import observe_witness
from tests.quorum.conftest import InProcessWitness

CLUSTER = """\
cluster: c1
primary_site: A
sites:
  A: {nodes: [{name: a1}]}
  B: {nodes: [{name: b1}]}
volumes:
  - {name: dbdata, driver: pyrepl, mode: sync, size: 1GiB, port: 7789, paths: {a1: /d, b1: /d}}
"""


def cluster_for(witness: InProcessWitness, cert: str) -> Cluster:
    base = parse_cluster_text(CLUSTER, "c1.yaml")[0]
    pki = witness.pki
    return replace(
        base,
        witness=Witness(
            witness.server,
            pki.fingerprints["server"],
            str(pki.cert(cert)),
            str(pki.key(cert)),
        ),
    )


def test_observe_reads_the_records_of_the_site_it_can_ask(
    witness: InProcessWitness, tmp_path: Path
) -> None:
    env = Environment(base_dir=tmp_path)
    with witness.connect("c1", "A", "a1") as a:
        assert a.heartbeat(1, True, 1).granted
        assert a.outdate("dbdata") == 1
        # B's node: B's cert; asking as A with it is refused (the pin is per site)
        views, outdated, errors = observe_witness(cluster_for(witness, "c1-b"), env)
    assert set(views) == {"B"} and views["B"].holder == "A" and not views["B"].granted
    assert outdated == {("dbdata", "B"): 1}
    assert "unauthorized" in errors["A"]
    snap = Snapshot(
        cluster=cluster_for(witness, "c1-b"),
        replicas={
            ("dbdata", "B"): ReplicaView("dbdata", "b1", "B", "secondary", "UpToDate", "Connecting")
        },
        witness=views,
        outdated=outdated,
        witness_errors=errors,
    )
    assert currency(snap, "dbdata", "B") == (
        False,
        "outdated since epoch 1 (witness record: the other site wrote alone)",
    )
    no_record = replace(snap, outdated={})
    ok, why = currency(no_record, "dbdata", "B")
    assert not ok and why.startswith("Connecting: the peer may have written")


def test_an_unreachable_witness_is_an_error_per_site(tmp_path: Path) -> None:
    base = parse_cluster_text(CLUSTER, "c1.yaml")[0]
    cluster = replace(base, witness=Witness("127.0.0.1:1", "sha256:" + "0" * 64, "a.crt", "a.key"))
    views, outdated, errors = observe_witness(cluster, Environment(base_dir=tmp_path))
    assert views == {} and outdated == {} and set(errors) == {"A", "B"}
