"""TLS on the replication link with pinned self-signed certificates (real TLS 1.3)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drorch.quorum.tls import generate_self_signed
from drorch.replication.base import Role
from drorch.replication.pyrepl.tls import link_tls
from tests.pyrepl.conftest import Cluster, connected, wait_until


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    out = {}
    for name in ("a", "b", "mallory"):
        cert, key, _fp = generate_self_signed(f"site-{name}", tmp_path / f"pki-{name}")
        out[name] = (cert, key)
    return out


def test_replication_over_pinned_tls(cluster: Cluster, certs: dict[str, tuple[Path, Path]]) -> None:
    tls_b = link_tls(*certs["b"], certs["a"][0])
    tls_a = link_tls(*certs["a"], certs["b"][0])
    b = cluster.start("b", Role.SECONDARY, tls=tls_b)
    a = cluster.start("a", Role.PRIMARY, peer=b.listen, tls=tls_a)
    wait_until("TLS link up and synced", lambda: connected(a) and connected(b))
    with a.client() as nbd:
        nbd.write(8192, b"over tls" * 512)
    assert b.content()[8192 : 8192 + 4096] == b"over tls" * 512
    session = a.engine.session
    assert session is not None and session.sock.version() == "TLSv1.3"
    # both directions busy at once (data one way, acks and verify the other)
    with a.client() as nbd:
        for i in range(48):
            nbd.write(i * 65536, os.urandom(65536))
    assert a.call("verify")["out_of_sync"] == []
    assert b.call("verify")["out_of_sync"] == []
    assert a.content() == b.content()


def test_an_unpinned_peer_never_connects(
    cluster: Cluster, certs: dict[str, tuple[Path, Path]]
) -> None:
    b = cluster.start("b", Role.SECONDARY, tls=link_tls(*certs["b"], certs["a"][0]))
    # mallory presents its own certificate, pinning b's: b must refuse it
    m = cluster.start(
        "m", Role.PRIMARY, peer=b.listen, tls=link_tls(*certs["mallory"], certs["b"][0])
    )
    result = m.call("connect", wait=2.0)
    assert result["connection"] == "Connecting"
    assert b.status()["connection"] == "Connecting"
    assert b.status()["disk"] == "Inconsistent", "nothing was accepted from mallory"


def test_plain_tcp_peer_cannot_talk_to_a_tls_side(
    cluster: Cluster, certs: dict[str, tuple[Path, Path]]
) -> None:
    b = cluster.start("b", Role.SECONDARY, tls=link_tls(*certs["b"], certs["a"][0]))
    a = cluster.start("a", Role.PRIMARY, peer=b.listen)
    assert a.call("connect", wait=2.0)["connection"] == "Connecting"
    assert b.status()["connection"] == "Connecting"


def test_tls_options_come_as_a_set() -> None:
    with pytest.raises(ValueError, match="together"):
        link_tls(Path("c"), None, None)
    assert link_tls(None, None, None) is None
