"""The agent compares the witness's `welcome` with the cluster file and refuses a
witness whose lease or heartbeat differ (real daemon, real mutual TLS on loopback)."""

from __future__ import annotations

import pytest

from drorch.agent.daemon import WitnessTimingMismatch, checked_witness
from drorch.clock import SystemClock
from drorch.model.loader import parse_cluster_text
from drorch.model.types import Cluster
from tests.quorum.conftest import InProcessWitness, Pki


def _cluster(pki: Pki, port: int, heartbeat: str, lease: str) -> Cluster:
    text = f"""
cluster: c1
primary_site: A
sites:
  A: {{nodes: [{{name: a1}}]}}
  B: {{nodes: [{{name: b1}}]}}
witness:
  address: 127.0.0.1:{port}
  fingerprint: "{pki.fingerprints["server"]}"
  cert: c1-a.crt
  key: c1-a.key
fencing: {{watchdog: soft, watchdog_timeout: 500ms, margin: 0s}}
agent: {{heartbeat: 100ms}}
quorum: {{heartbeat: {heartbeat}, lease_timeout: {lease}, switch_delay: 400ms}}
"""
    cluster, _ = parse_cluster_text(text, "c.yaml")
    return cluster


def test_disagreeing_witness_is_refused(pki: Pki, witness: InProcessWitness) -> None:
    cluster = _cluster(pki, witness.port, "100ms", "10s")
    connect = checked_witness(cluster, "a1", pki.folder, SystemClock())
    with pytest.raises(WitnessTimingMismatch) as info:
        connect()
    assert str(info.value) == (
        "the witness grants 600 ms leases but quorum.lease_timeout is 10s: set one to the"
        " other (takeover_wait, the watchdog and the fencing chain are derived from"
        " lease_timeout)"
    )


def test_heartbeat_mismatch_is_refused(pki: Pki, witness: InProcessWitness) -> None:
    cluster = _cluster(pki, witness.port, "200ms", "1200ms")
    with pytest.raises(WitnessTimingMismatch, match=r"every 100 ms but quorum\.heartbeat is 0\.2s"):
        checked_witness(cluster, "a1", pki.folder, SystemClock())()


def test_agreeing_witness_connects(pki: Pki, witness: InProcessWitness) -> None:
    cluster = _cluster(pki, witness.port, "100ms", "600ms")
    conn = checked_witness(cluster, "a1", pki.folder, SystemClock())()
    try:
        assert conn.welcome is not None and conn.welcome.lease_ms == 600
    finally:
        conn.close()
